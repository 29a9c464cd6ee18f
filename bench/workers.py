"""Workers at scale, measured (issue #3's figures), on PostgreSQL:

- enqueue-to-delivered latency, p50 and p99, with one idle worker running (it is woken by
  LISTEN/NOTIFY; its poll interval is 5 s, so polling cannot explain a fast delivery);
- throughput with 1, 2 and 4 worker processes against a sink that waits 20 ms per message,
  and with ``--concurrency`` 1, 4 and 16 in one process;
- a rate limit of 20/s held across 3 workers: the rate actually achieved.

Rates are taken from the attempt history (first to last attempt), so process start-up does
not count. Run: ``.venv/bin/python bench/workers.py`` (writes bench/results/workers.md/.json).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB = "mailroom_bench_workers"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.worker_settings")
os.environ["BENCH_PG_NAME"] = DB

subprocess.run(
    ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {DB}"],
    capture_output=True,
)
subprocess.run(
    ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {DB}"], check=True
)

from tests.support.smtp_server import ScriptedSMTPServer  # noqa: E402

SINK = ScriptedSMTPServer(keep_data=False).start()
os.environ["BENCH_SMTP_PORT"] = str(SINK.port)

import django  # noqa: E402

django.setup()

from django.core.mail import EmailMessage  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402
from django.db.models import Max, Min  # noqa: E402

import mailroom  # noqa: E402
from mailroom.models import Attempt, BackendState, Message  # noqa: E402

call_command("migrate", verbosity=0)


def reset(delay: float = 0.0) -> None:
    Attempt.objects.all().delete()
    Message.objects.all().delete()
    BackendState.objects.all().delete()
    SINK.clear()
    SINK.script.data_delay = delay


def queue(n: int) -> None:
    for start in range(0, n, 1000):
        with transaction.atomic():
            mailroom.enqueue_many(
                EmailMessage(f"S{i}", "B", "bench@example.com", [f"u{i}@example.com"])
                for i in range(start, min(n, start + 1000))
            )


def worker(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "django", "mailroom", "worker", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_started(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if "stop with SIGTERM" in line:
            return
    raise SystemExit("worker did not start")


def attempt_rate() -> float:
    span = Attempt.objects.aggregate(first=Min("started_at"), last=Max("started_at"))
    seconds = (span["last"] - span["first"]).total_seconds()
    return (Attempt.objects.count() - 1) / seconds if seconds > 0 else float("nan")


def latency(samples: int = 200) -> dict[str, float]:
    reset()
    proc = worker()
    wait_started(proc)
    time.sleep(1.0)
    results = []
    for n in range(1, samples + 1):
        with transaction.atomic():
            mailroom.enqueue(EmailMessage("L", "B", "bench@example.com", ["l@example.com"]))
        committed = time.perf_counter()
        if not SINK.wait_for(n, timeout=30):
            raise SystemExit("a message was not delivered within 30 s")
        results.append(time.perf_counter() - committed)
        time.sleep(0.02)
    proc.terminate()
    proc.wait(60)
    ordered = sorted(results)
    return {
        "samples": samples,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
        "max_ms": 1000 * ordered[-1],
    }


def throughput(processes: int, concurrency: int, n: int) -> float:
    reset(delay=0.020)
    queue(n)
    procs = [
        worker("--burst", "--concurrency", str(concurrency), "--batch-size", "20")
        for _ in range(processes)
    ]
    for proc in procs:
        proc.wait(600)
    assert SINK.count == n, f"sink received {SINK.count}, expected {n}"
    return attempt_rate()


def rate_limited(limit: int = 20, n: int = 200) -> dict[str, float]:
    reset()
    queue(n)
    env = {"BENCH_RATE_LIMIT": f"{limit}/s"}
    procs = [worker("--burst", "--batch-size", "20", env=env) for _ in range(3)]
    for proc in procs:
        proc.wait(600)
    assert SINK.count == n
    times = sorted(Attempt.objects.values_list("started_at", flat=True))
    steady = [t for t in times if (t - times[0]).total_seconds() >= 1.0]  # after the burst
    seconds = (steady[-1] - steady[0]).total_seconds()
    return {"limit_per_s": limit, "measured_per_s": (len(steady) - 1) / seconds}


def main() -> None:
    figures: dict[str, Any] = {"latency": latency()}
    figures["processes"] = {p: throughput(p, 1, 150 * p) for p in (1, 2, 4)}
    figures["threads"] = {c: throughput(1, c, 150 * c) for c in (1, 4, 16)}
    figures["rate_limit"] = rate_limited()
    SINK.stop()
    one_proc, one_thread = figures["processes"][1], figures["threads"][1]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        "# Workers at scale (PostgreSQL, sink waiting 20 ms per message)",
        "",
        f"Command: `.venv/bin/python bench/workers.py`, {when}, {os.cpu_count()} CPUs.",
        "",
        "| measurement | figure |",
        "|---|---|",
        f"| enqueue-to-delivered latency, one idle worker: p50 | "
        f"{figures['latency']['p50_ms']:.1f} ms |",
        f"| same, p99 | {figures['latency']['p99_ms']:.1f} ms |",
    ]
    for p, rate in figures["processes"].items():
        lines.append(f"| {p} worker process(es) | {rate:.0f} msg/s ({rate / one_proc:.1f}x) |")
    for c, rate in figures["threads"].items():
        lines.append(
            f"| 1 process, --concurrency {c} | {rate:.0f} msg/s ({rate / one_thread:.1f}x) |"
        )
    rl = figures["rate_limit"]
    lines.append(
        f"| RATE_LIMIT {rl['limit_per_s']}/s across 3 workers | {rl['measured_per_s']:.1f} msg/s |"
    )
    text = "\n".join(lines) + "\n"
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "workers.md").write_text(text)
    (out / "workers.json").write_text(json.dumps(figures, indent=2, default=str))
    print(text)


if __name__ == "__main__":
    main()
