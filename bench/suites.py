"""The measurements, parent side: every figure comes from a fresh child process.

Rounds alternate the configurations back to back, the order rotated each round, so slow drift
of a shared machine hits every configuration alike; a ratio is taken within a round (to raw
smtplib over one connection, or to the best peer) and its median over rounds reported.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from bench import databases
from bench.child import run_child
from bench.configs import RAW, EnqueueConfig, SendConfig
from bench.cpu import process_cpu, user_cpu
from bench.latency import LatencyProxy
from bench.sink import Sink, check_count

C = TypeVar("C", SendConfig, EnqueueConfig)
T = TypeVar("T")

#: A claim takes 10-15 ms at any depth and its time on SQLite is mostly the commit's fsync,
#: which the shared machine's other work makes jumpy: the median of 31 holds still where the
#: median of 9 moved by 20 % between runs. The claims are made in rounds, every depth in
#: each (a database per depth), so that a slow spell of the disk falls on all depths alike
#: rather than on whichever was measured then: 3 rounds of 11, one warm-up claim each.
PICKUP_ROUNDS = 3
PICKUP_REPEATS = 33
PEER_PICKUP_REPEATS = 3
#: The peers load their whole queue to pick a batch: measured up to this depth only.
PEER_MAX_DEPTH = 100_000
QUERY_BATCH_SIZES = (10, 100, 500)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def rotated(items: Sequence[T], round_no: int) -> list[T]:
    order = list(items)
    k = round_no % len(order)
    return order[k:] + order[:k]


def alternate(
    configs: Sequence[C], rounds: int, measure: Callable[[C], dict[str, Any]]
) -> list[dict[str, dict[str, Any]]]:
    """Measure every config once per round, in rotated order: one dict per round, by key."""
    results = []
    for round_no in range(rounds):
        this_round: dict[str, dict[str, Any]] = {}
        for config in rotated(configs, round_no):
            t0 = time.perf_counter()
            this_round[config.key] = measure(config)
            rate = this_round[config.key]["rate"]
            log(
                f"  round {round_no + 1}/{rounds} {config.name}: {rate:,.0f} msg/s "
                f"({time.perf_counter() - t0:.1f} s)"
            )
        results.append(this_round)
    return results


def summarise(
    configs: Sequence[C],
    rounds: list[dict[str, dict[str, Any]]],
    baseline: Callable[[dict[str, dict[str, Any]]], float],
) -> dict[str, dict[str, Any]]:
    """Median rate, median of per-round ratios to ``baseline(round)``, median peak RSS."""
    summary = {}
    for config in configs:
        runs = [r[config.key] for r in rounds]
        ratios = [run["rate"] / baseline(r) for run, r in zip(runs, rounds, strict=True)]
        summary[config.key] = {
            "name": config.name,
            "rate": statistics.median(run["rate"] for run in runs),
            "ratio": statistics.median(ratios),
            "rates": [run["rate"] for run in runs],
            "ratios": ratios,
            "rss_mb": statistics.median(run.get("rss_mb", 0.0) for run in runs),
            "pipelined": max((run.get("pipelined", 0.0) for run in runs), default=0.0),
            "chained": max((run.get("chained", 0.0) for run in runs), default=0.0),
            "cpu_us_per_message": _median_cpu(runs),
            "target": config.target,
        }
    return summary


def _median_cpu(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Median CPU per message of each part (client, sink, database) over the rounds."""
    parts: dict[str, list[float]] = {}
    for run in runs:
        for part, value in run.get("cpu_us_per_message", {}).items():
            parts.setdefault(part, []).append(value)
    return {part: statistics.median(values) for part, values in parts.items()}


# -- send ----------------------------------------------------------------------------------------


def measure_send(
    config: SendConfig, db: str, n: int, shape: str, delay_ms: float = 0.0
) -> dict[str, Any]:
    """Fill the queue (if any), then time the sending call against a fresh sink (behind a
    :class:`~bench.latency.LatencyProxy` holding each chunk ``delay_ms`` each way, if set)."""
    send_params: dict[str, Any] = {"n": n, **config.params}
    if config.prepare is not None:
        prepared = run_child(
            config.prepare, app=config.app, db=db, n=n, shape=shape, env=config.env
        )
        if prepared["queued"] != n:
            raise AssertionError(f"{config.name}: queued {prepared['queued']}, expected {n}")
    else:
        send_params["shape"] = shape
    with Sink() as sink, contextlib.ExitStack() as stack:
        port = sink.port
        if delay_ms:
            port = stack.enter_context(LatencyProxy(sink.port, delay_ms=delay_ms)).port
        before = _cpu_around(sink, db)
        result = run_child(
            config.send, app=config.app, db=db, port=port, env=config.env, **send_params
        )
        # The database server's connection processes end just after their client: give the
        # server a moment to reap them, so that their CPU is counted.
        time.sleep(0.2)
        after = _cpu_around(sink, db)
        stats = sink.stop()
    check_count(f"{config.name} ({db}, {shape})", stats, messages=n)
    if result["sent"] != n or result.get("db_sent", n) != n:
        raise AssertionError(
            f"{config.name} ({db}): reported {result['sent']} sent, "
            f"its tables say {result.get('db_sent')}, expected {n}"
        )
    cpu = {"client": result["cpu_s"] * 1e6 / n}
    for part in ("sink", "database"):
        if before[part] is not None and after[part] is not None:
            cpu[part] = (after[part] - before[part]) * 1e6 / n
    return {
        "rate": n / result["seconds"],
        "seconds": result["seconds"],
        "rss_mb": result["rss_mb"],
        "connections": stats["connections"],
        # Mail transactions the sink saw pipelined (RFC 2920), as a share of the messages.
        "pipelined": stats.get("pipelined", 0) / n,
        # Those whose group came with the previous message's final dot, in the same write.
        "chained": stats.get("chained", 0) / n,
        "cpu_us_per_message": cpu,
    }


def _cpu_around(sink: Sink, db: str) -> dict[str, float | None]:
    """CPU seconds so far of the sink and (PostgreSQL) of the database server."""
    assert sink.proc is not None
    return {
        "sink": process_cpu(sink.proc.pid),
        "database": user_cpu("postgres") if db == "postgres" else None,
    }


def send_suite(
    configs: Sequence[SendConfig],
    db: str,
    n: int,
    rounds: int,
    shape: str,
    delay_ms: float = 0.0,
) -> Any:
    runnable = [c for c in configs if c.unavailable(db) is None]
    results = alternate(runnable, rounds, lambda c: measure_send(c, db, n, shape, delay_ms))
    summary = summarise(runnable, results, lambda r: float(r[RAW]["rate"]))
    for config in configs:
        reason = config.unavailable(db)
        if reason is not None:
            summary[config.key] = {
                "name": config.name,
                "unavailable": reason,
                "target": config.target,
            }
    return {
        "messages": n,
        "shape": shape,
        "delay_ms": delay_ms,
        "rounds": results,
        "summary": summary,
    }


# -- enqueue -------------------------------------------------------------------------------------


def measure_enqueue(config: EnqueueConfig, db: str, n: int) -> dict[str, Any]:
    result = run_child(config.task, app=config.app, db=db, n=n, **config.params)
    if result["queued"] != n:
        raise AssertionError(f"{config.name} ({db}): queued {result['queued']}, expected {n}")
    return {"rate": n / result["seconds"], "seconds": result["seconds"], "rss_mb": result["rss_mb"]}


def enqueue_suite(configs: Sequence[EnqueueConfig], db: str, n: int, rounds: int) -> Any:
    results = alternate(configs, rounds, lambda c: measure_enqueue(c, db, n))
    peers = [c.key for c in configs if c.peer]

    def best_peer(r: dict[str, dict[str, Any]]) -> float:
        return max(float(r[k]["rate"]) for k in peers) if peers else float("nan")

    return {"messages": n, "rounds": results, "summary": summarise(configs, results, best_peer)}


# -- pick-up -------------------------------------------------------------------------------------

PICKUP_TAG = "depth"


def pickup_suite(db: str, depths: Sequence[int], apps: Sequence[str]) -> Any:
    """Claim cost and worker memory as mailroom's queue grows (the peers' up to 100,000)."""
    out: dict[str, Any] = {}
    for app in apps:
        if app == "mailroom":
            out[app] = _mailroom_pickup(db, sorted(depths))
            continue
        databases.recreate(app, db, PICKUP_TAG)
        run_child("common.migrate", app=app, db=db, tag=PICKUP_TAG)
        out[app] = {}
        try:
            for depth in sorted(depths):
                if depth > PEER_MAX_DEPTH:
                    out[app][str(depth)] = {"skipped": f"peers measured up to {PEER_MAX_DEPTH:,}"}
                    continue
                out[app][str(depth)] = _peer_pickup_at(app, db, depth)
        finally:
            databases.drop(app, db, PICKUP_TAG)
    return out


def _peer_pickup_at(app: str, db: str, depth: int) -> dict[str, Any]:
    filled = run_child("pickup.fill", app=app, db=db, tag=PICKUP_TAG, depth=depth)
    log(f"  {app} queue at {filled['queued']:,} (filled in {filled['seconds']:.1f} s)")
    peer = run_child(
        "pickup.peer_pickup", app=app, db=db, tag=PICKUP_TAG, repeats=PEER_PICKUP_REPEATS
    )
    log(f"  {app} pick-up at {depth:,}: {peer['seconds'] * 1000:.1f} ms, {peer['rss_mb']:.0f} MB")
    return {
        "fill_seconds": filled["seconds"],
        "pickup_seconds": peer["seconds"],
        "times": peer["times"],
        "rss_mb": peer["rss_mb"],
    }


def _mailroom_pickup(db: str, depths: Sequence[int]) -> dict[str, Any]:
    """mailroom's queue filled to each depth in a database of its own, then claims made in
    :data:`PICKUP_ROUNDS` rounds over every depth (order rotated), then one batch sent at each
    depth by a fresh worker for its memory."""
    app = "mailroom"
    tags = {depth: f"{PICKUP_TAG}{depth}" for depth in depths}
    out: dict[str, dict[str, Any]] = {}
    try:
        for depth, tag in tags.items():
            databases.recreate(app, db, tag)
            run_child("common.migrate", app=app, db=db, tag=tag)
            filled = run_child("pickup.fill", app=app, db=db, tag=tag, depth=depth)
            log(f"  {app} queue at {filled['queued']:,} (filled in {filled['seconds']:.1f} s)")
            out[str(depth)] = {"fill_seconds": filled["seconds"], "times": []}
        per_round = PICKUP_REPEATS // PICKUP_ROUNDS
        for r in range(PICKUP_ROUNDS):
            for depth in rotated(depths, r):
                claimed = run_child(
                    "pickup.mailroom_claim", app=app, db=db, tag=tags[depth], repeats=per_round
                )
                out[str(depth)]["times"] += claimed["times"]
        for depth, tag in tags.items():
            result = out[str(depth)]
            result["claim_seconds"] = statistics.median(result["times"])
            result.update(_batch_memory(db, tag, depth))
            log(
                f"  mailroom claim at {depth:,}: {result['claim_seconds'] * 1000:.2f} ms; one "
                f"batch sent by a fresh worker: peak {result['rss_mb']:.1f} MB"
            )
    finally:
        for tag in tags.values():
            databases.drop(app, db, tag)
    return out


def _batch_memory(db: str, tag: str, depth: int) -> dict[str, Any]:
    with Sink() as sink:
        batch = run_child(
            "pickup.mailroom_batch_memory", app="mailroom", db=db, tag=tag, port=sink.port
        )
        stats = sink.stop()
    # The clones share one Message-ID, so the sink sees them as duplicates of each other.
    check_count(
        f"mailroom batch at depth {depth}", stats, messages=batch["sent"], duplicates_allowed=True
    )
    if batch["sent"] != 100:
        raise AssertionError(f"mailroom sent {batch['sent']} of a batch of 100 at {depth}")
    return {
        "batch_seconds": batch["seconds"],
        "rss_mb": batch["rss_mb"],
        "rss_before_mb": batch["rss_before_mb"],
    }


# -- queries per batch ---------------------------------------------------------------------------


def queries_suite(db: str) -> dict[str, Any]:
    with Sink() as sink:
        result = run_child(
            "queries.per_batch",
            app="mailroom",
            db=db,
            port=sink.port,
            sizes=list(QUERY_BATCH_SIZES),
        )
        stats = sink.stop()
    check_count(f"queries per batch ({db})", stats, messages=result["sent"])
    log(f"  queries per batch ({db}): {result['queries']}; bulk flush: {result['bulk_flush']}")
    return {key: result[key] for key in ("queries", "attempt_inserts", "log_notes", "bulk_flush")}
