"""``mailroom purge`` of 1,000,000 old sent messages (each with one attempt) on PostgreSQL:
time and the purging process's peak memory (issue #5's figure).

    .venv/bin/python bench/purge_figures.py [--messages 1000000]

The table is filled in seconds with INSERT ... SELECT generate_series, cloning one real
enqueued row and its content (payload and MIME bytes), so the purge has real rows to delete.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DB = "mailroom_bench_purge"


def psql(sql: str, db: str = "postgres") -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-qc", sql], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    args = parser.parse_args()

    psql(f"DROP DATABASE IF EXISTS {DB}")
    psql(f"CREATE DATABASE {DB}")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "bench.worker_settings",
        "BENCH_PG_NAME": DB,
    }
    setup = """
import django; django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.core.mail import EmailMessage
import mailroom
mailroom.enqueue(EmailMessage("S", "B" * 1024, "a@example.com", ["r@example.com"]))
"""
    subprocess.run([sys.executable, "-c", setup], env=env, cwd=ROOT, check=True)
    started = time.perf_counter()
    columns = (
        "status, priority, backend, created_at, due_at, attempts, message_id, subject, "
        "from_email, recipients, refused_recipients, reason, claimed_by"
    )
    psql(
        f"INSERT INTO mailroom_message ({columns}, sent_at) "
        f"SELECT 'sent', priority, backend, now() - interval '40 days', due_at, 1, "
        f"'<' || g || '@bench>', subject, from_email, recipients, refused_recipients, "
        f"'', '', now() - interval '40 days' "
        f"FROM mailroom_message, generate_series(1, {args.messages}) AS g LIMIT {args.messages};"
        "INSERT INTO mailroom_messagecontent (message_id, payload, mime) "
        "SELECT m.id, c.payload, c.mime FROM mailroom_message m, mailroom_messagecontent c "
        "WHERE m.status = 'sent' AND c.message_id = "
        "(SELECT min(id) FROM mailroom_message WHERE status = 'queued');"
        "DELETE FROM mailroom_messagecontent WHERE message_id IN "
        "(SELECT id FROM mailroom_message WHERE status = 'queued');"
        "DELETE FROM mailroom_message WHERE status = 'queued';"
        "INSERT INTO mailroom_attempt (message_id, started_at, duration, backend, worker, "
        "verdict, charged, enhanced_code, error_type, error_text, reason, recipients, "
        "esp_message_id) SELECT id, sent_at, 0.001, backend, 'bench', 'sent', true, '', '', '', "
        "'', '{}'::jsonb, '' FROM mailroom_message;",
        DB,
    )
    psql("VACUUM ANALYZE", DB)
    filled = time.perf_counter() - started
    purge = f"""
import resource, time
import django; django.setup()
from django.core.management import call_command
started = time.perf_counter()
call_command("mailroom", "purge", "--sent-older-than", "30d", "--batch-size", "{args.batch_size}")
print("SECONDS", time.perf_counter() - started)
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    proc = subprocess.run(
        [sys.executable, "-c", purge],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    values = dict(
        line.split(" ", 1)
        for line in proc.stdout.splitlines()
        if line[:1] in ("S", "P") and line.split(" ", 1)[0] in ("SECONDS", "PEAK_KB")
    )
    seconds, peak = float(values["SECONDS"]), int(values["PEAK_KB"])
    print(proc.stdout.strip())
    print(f"filled {args.messages:,} sent messages + attempts in {filled:.0f} s")
    print(
        f"purge of {args.messages:,} sent messages with their attempts "
        f"(batches of {args.batch_size:,}): {seconds:.1f} s, "
        f"{args.messages / seconds:,.0f} messages/s, "
        f"peak RSS of the purging process {peak / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
