"""Send throughput of ``mailroom send`` beside raw smtplib over one connection, same run.

Method (after ../shared/reference/performance.md): a sink (aiosmtpd, its own process) that
counts and discards; plain-text messages with one recipient and a 1 KiB body; each
configuration in a fresh process, the rate timed around the sending call only; the sink's
count checked after every run; configurations alternated within a round, order rotated each
round; the figure is the median over rounds of the ratio to raw smtplib *in the same round*.

    python bench/send_throughput.py --messages 5000 --rounds 3 --db sqlite
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BODY = ("x" * 63 + "\n") * 16  # 1 KiB


class Sink:
    """The counting SMTP sink in its own process."""

    def __enter__(self) -> Sink:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests/support/smtp_server.py"), "--count-only"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)

    def stop(self) -> dict[str, int]:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        return dict(json.loads(out.strip().splitlines()[-1]))


def child(env_extra: dict[str, str], code: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env_extra}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{proc.stderr}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


RAW = r"""
import json, smtplib, time, os
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django.setup()
from django.core.mail import EmailMessage
n = int(os.environ["BENCH_N"]); port = int(os.environ["BENCH_SMTP_PORT"])
body = os.environ["BENCH_BODY"]
msgs = [EmailMessage(f"S{i}", body, "bench@example.com", [f"r{i}@example.com"]).message()
        .as_bytes(linesep="\r\n") for i in range(n)]
t0 = time.perf_counter()
with smtplib.SMTP("127.0.0.1", port) as s:
    for i, m in enumerate(msgs):
        s.sendmail("bench@example.com", [f"r{i}@example.com"], m)
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""

PREPARE = """
import json, os
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django.setup()
from django.core.management import call_command
from django.core.mail import EmailMessage
from mailroom.models import Attempt, BackendState, Message
from mailroom import enqueue_many
call_command("migrate", verbosity=0)
Attempt.objects.all().delete(); Message.objects.all().delete(); BackendState.objects.all().delete()
n = int(os.environ["BENCH_N"]); body = os.environ["BENCH_BODY"]
batch = [EmailMessage(f"S{i}", body, "bench@example.com", [f"r{i}@example.com"]) for i in range(n)]
for i in range(0, n, 1000):
    enqueue_many(batch[i:i + 1000])
print(json.dumps({"queued": Message.objects.count()}))
"""

SEND = """
import json, os, time
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django.setup()
from mailroom.worker import Engine
from mailroom.models import Message
engine = Engine()
t0 = time.perf_counter()
stats = engine.send_due()
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "sent": stats.sent,
                  "db_sent": Message.objects.filter(status="sent").count()}))
"""


def run_raw(n: int) -> float:
    with Sink() as sink:
        result = child(
            {"BENCH_N": str(n), "BENCH_SMTP_PORT": str(sink.port), "BENCH_BODY": BODY}, RAW
        )
        stats = sink.stop()
    assert stats["messages"] == n, f"raw: sink received {stats['messages']}, expected {n}"
    return n / result["seconds"]


def run_mailroom(n: int, db: str) -> float:
    env = {"BENCH_N": str(n), "BENCH_DB": db, "BENCH_BODY": BODY}
    child(env, PREPARE)
    with Sink() as sink:
        result = child({**env, "BENCH_SMTP_PORT": str(sink.port)}, SEND)
        stats = sink.stop()
    assert stats["messages"] == n, f"mailroom: sink received {stats['messages']}, expected {n}"
    assert result["db_sent"] == n, f"mailroom: {result['db_sent']} rows sent, expected {n}"
    return n / result["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    if args.db == "postgres":
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", "CREATE DATABASE mailroom_bench"],
            capture_output=True,
        )
    configs = {
        "raw smtplib, 1 connection": lambda: run_raw(args.messages),
        "mailroom send (1 process)": lambda: run_mailroom(args.messages, args.db),
    }
    rates: dict[str, list[float]] = {name: [] for name in configs}
    names = list(configs)
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            rates[name].append(configs[name]())
            time.sleep(0.5)
    raw = rates[names[0]]
    print(f"send throughput, {args.messages} messages, {args.db}, {args.rounds} rounds")
    print(f"{'configuration':32} {'median msg/s':>12} {'x raw (median of rounds)':>26}")
    for name in names:
        ratio = statistics.median(x / r for x, r in zip(rates[name], raw, strict=True))
        print(f"{name:32} {statistics.median(rates[name]):12.0f} {ratio:26.2f}")
    print(json.dumps({"db": args.db, "messages": args.messages, "rates": rates}))


if __name__ == "__main__":
    main()
