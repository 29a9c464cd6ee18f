"""Run mailroom's benchmarks beside raw smtplib and the peers, and write the report.

    bench/run.sh                      # the full run (about 20 minutes on 2 CPUs)
    bench/run.sh --quick              # a smoke run (about 2 minutes)
    bench/run.sh --db sqlite --only send,enqueue --messages 2000

The method is ../shared/reference/performance.md's; bench/README.md explains it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from bench import databases, disk, environment, report, suites
from bench.child import run_child
from bench.configs import (
    BIG_SHAPES,
    ENQUEUE,
    RAW,
    REMOTE,
    REMOTE_DELAY_MS,
    SEND,
    SUITES,
    EnqueueConfig,
    SendConfig,
    big_configs,
)
from bench.suites import log

RESULTS = Path(__file__).resolve().parent / "results"
APPS = ("mailroom", "mailer", "post_office")
FULL_DEPTHS = (1_000, 100_000, 1_000_000)
QUICK_DEPTHS = (1_000, 10_000)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.sh", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 300 messages, 20 big ones, 1 round, depths 1,000 and 10,000",
    )
    parser.add_argument("--messages", type=int, help="per send/enqueue run (default 5000)")
    parser.add_argument("--big-messages", type=int, help="per big-message run (default 200)")
    parser.add_argument(
        "--remote-messages", type=int, help="per run against the distant server (default 150)"
    )
    parser.add_argument("--rounds", type=int, help="rounds of alternation (default 3)")
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite,postgres (default both)")
    parser.add_argument("--depths", help="queue depths for pick-up (default 1000,100000,1000000)")
    parser.add_argument(
        "--only",
        help="comma-separated suites ("
        + ", ".join(SUITES)
        + ") and/or configuration keys ("
        + ", ".join(c.key for c in (*SEND, *ENQUEUE))
        + ")",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS,
        help="where latest.md and latest.json go (default bench/results)",
    )
    args = parser.parse_args(argv)
    args.messages = args.messages or (300 if args.quick else 5000)
    args.big_messages = args.big_messages or (20 if args.quick else 200)
    args.remote_messages = args.remote_messages or (50 if args.quick else 150)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.dbs = [db.strip() for db in args.db.split(",") if db.strip()]
    for db in args.dbs:
        if db not in databases.DB_KINDS:
            parser.error(f"unknown database {db!r}: use sqlite and/or postgres")
    if args.depths:
        args.depth_list = [int(d.replace("_", "")) for d in args.depths.split(",")]
    else:
        args.depth_list = list(QUICK_DEPTHS if args.quick else FULL_DEPTHS)
    args.only_set = {o.strip() for o in (args.only or "").split(",") if o.strip()}
    known = {*SUITES, *(c.key for c in (*SEND, *ENQUEUE))}
    if args.only_set - known:
        parser.error(f"unknown --only names: {', '.join(sorted(args.only_set - known))}")
    return args


def selected_send(only: set[str]) -> list[SendConfig]:
    """The send configurations ``--only`` asks for (raw smtplib always: the baseline)."""
    if not only or "send" in only:
        return list(SEND)
    chosen = [c for c in SEND if c.key in only]
    return [c for c in SEND if c.key == RAW or c in chosen] if chosen else []


def selected_enqueue(only: set[str]) -> list[EnqueueConfig]:
    if not only or "enqueue" in only:
        return list(ENQUEUE)
    chosen = [c for c in ENQUEUE if c.key in only]
    # A ratio to the best peer needs the peers.
    return [c for c in ENQUEUE if c in chosen or c.peer] if chosen else []


def wanted(only: set[str], suite: str) -> bool:
    return not only or suite in only


def prepare_databases(dbs: list[str]) -> None:
    for db in dbs:
        if db == "postgres" and databases.postgres_version() == "unavailable":
            raise SystemExit(
                "PostgreSQL is not reachable as postgres@127.0.0.1:5432: start it, or run with "
                "--db sqlite"
            )
        for app in APPS:
            databases.recreate(app, db)
            run_child("common.migrate", app=app, db=db)


def checkpoint(results: dict[str, Any], output: Path) -> None:
    """What is measured so far, in results/raw/ (not kept in git): a crash late in a long run
    keeps the figures of its first part."""
    raw = output / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "partial.json").write_text(json.dumps(results, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    command = os.environ.get("BENCH_COMMAND") or shlex.join(
        ["python", "-m", "bench.run", *(argv if argv is not None else sys.argv[1:])]
    )
    results: dict[str, Any] = {
        "command": command,
        "options": {
            "messages": args.messages,
            "big_messages": args.big_messages,
            "remote_messages": args.remote_messages,
            "rounds": args.rounds,
            "dbs": args.dbs,
            "depths": args.depth_list,
            "only": sorted(args.only_set),
        },
        "environment": environment.describe("postgres" in args.dbs),
    }
    log(f"mailroom benchmarks: {command}")
    cpu_before = environment.cpu_times()
    prepare_databases(args.dbs)
    send_configs = selected_send(args.only_set)
    big = wanted(args.only_set, "big")
    remote_configs = list(REMOTE) if wanted(args.only_set, "remote") else []
    enqueue_configs = selected_enqueue(args.only_set)
    for db in args.dbs:
        if send_configs:
            log(f"send throughput, {db}, {args.messages} messages")
            # SQLite's commit time, the floor under mailroom's send there, is taken before and
            # after the suite: the disk's pace drifts as the machine's load does.
            before = disk.probe() if db == "sqlite" else None
            results.setdefault("send", {})[db] = suites.send_suite(
                send_configs, db, args.messages, args.rounds, "plain"
            )
            if before is not None:
                results["disk"] = disk.merge([before, disk.probe()])
        if big:
            for shape in BIG_SHAPES:
                log(f"big messages ({shape}), {db}, {args.big_messages} messages")
                results.setdefault("big", {}).setdefault(db, {})[shape] = suites.send_suite(
                    big_configs(shape), db, args.big_messages, args.rounds, shape
                )
        if remote_configs:
            log(f"a server {REMOTE_DELAY_MS} ms away, {db}, {args.remote_messages} messages")
            results.setdefault("remote", {})[db] = suites.send_suite(
                remote_configs,
                db,
                args.remote_messages,
                args.rounds,
                "plain",
                delay_ms=REMOTE_DELAY_MS,
            )
        if enqueue_configs:
            log(f"enqueue, {db}, {args.messages} messages")
            results.setdefault("enqueue", {})[db] = suites.enqueue_suite(
                enqueue_configs, db, args.messages, args.rounds
            )
        if wanted(args.only_set, "queries"):
            log(f"queries per batch, {db}")
            results.setdefault("queries", {})[db] = suites.queries_suite(db)
        checkpoint(results, args.output)
        if wanted(args.only_set, "pickup"):
            log(f"pick-up cost at depths {args.depth_list}, {db}")
            results.setdefault("pickup", {})[db] = suites.pickup_suite(db, args.depth_list, APPS)
            checkpoint(results, args.output)
    results["seconds"] = time.perf_counter() - started
    results["environment"]["steal"] = environment.steal_share(cpu_before, environment.cpu_times())
    results["targets"] = report.targets(results, args.dbs)
    path = report.write(results, args.output)
    sys.stdout.write(path.read_text())
    log(f"written: {path} and {path.with_suffix('.json')} ({results['seconds'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
