"""What PostgreSQL spends on one outcome's write, beside lighter writes that could stand in for it.

By default a worker writes each sent message's outcome before the next message's final dot
(``FLUSH_EVERY = 1``: at most one duplicate per crash). On PostgreSQL that is one prepared
statement per message, which inserts the attempt and moves the message to ``sent``
(``mailroom.recording_pg``), committed with ``synchronous_commit = off``. This probe measures
the server's CPU (its backend process's, from ``/proc``) per execution of that statement's
shape and of lighter ones on scratch copies of mailroom's tables:

- ``outcome``: the statement's shape (the attempt's INSERT and the message's UPDATE);
- ``attempt only``: the INSERT alone (the UPDATE left to the batch's end);
- ``journal``: an INSERT into a table with no index, the least a durable per-message note
  can be (the rest applied at the batch's end);
- ``counter``: a one-row HOT UPDATE (how many of the batch are sent), which would lose the
  attempt's details in a crash;
- ``SELECT 1``: a round trip with no write, the floor.

Run it against the benchmark's PostgreSQL database (``bash bench/run.sh --db postgres`` makes
it): ``.bench-venv/bin/python -m bench.write_shapes [executions]``. The scratch tables are
dropped at the end.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg

DSN = "host=127.0.0.1 user=postgres dbname=mailroom_bench_mailroom"
WARM_UP = 10

ATTEMPT_COLUMNS = (
    "message_id, started_at, duration, backend, worker, verdict, charged, code, enhanced_code, "
    "error_type, error_text, reason, recipients, esp_message_id"
)
ATTEMPT_VALUES = ", ".join(["%s"] * 14)
NO_SYNC = "set_config('synchronous_commit', 'off', true)"

OUTCOME = (
    f"WITH attempt AS (INSERT INTO x_attempt ({ATTEMPT_COLUMNS}) VALUES ({ATTEMPT_VALUES}) "
    "RETURNING 1), "
    "moved AS (UPDATE x_message SET status = 'sent', sent_at = %s, last_attempt_at = %s, "
    "attempts = attempts + 1, pending_recipients = '[]'::jsonb, reason = '', claimed_by = '', "
    "claimed_until = NULL WHERE id = %s AND claimed_by = %s RETURNING 1) "
    f"SELECT (SELECT count(*) FROM moved), {NO_SYNC}"
)
ATTEMPT_ONLY = (
    f"INSERT INTO x_attempt ({ATTEMPT_COLUMNS}) VALUES ({ATTEMPT_VALUES}) RETURNING {NO_SYNC}"
)
JOURNAL = f"INSERT INTO x_journal VALUES (%s, %s, %s) RETURNING {NO_SYNC}"
COUNTER = f"UPDATE x_progress SET sent = %s WHERE token = %s RETURNING {NO_SYNC}"


def _setup(cursor: Any, rows: int) -> int:
    cursor.execute("DROP TABLE IF EXISTS x_attempt, x_message, x_journal, x_progress")
    # Copies of mailroom's tables with their indexes (the claim's partial one included).
    cursor.execute("CREATE TABLE x_message (LIKE mailroom_message INCLUDING ALL)")
    cursor.execute("CREATE TABLE x_attempt (LIKE mailroom_attempt INCLUDING ALL)")
    cursor.execute("CREATE TABLE x_journal (token varchar(64), message_id bigint, note jsonb)")
    cursor.execute("CREATE TABLE x_progress (token varchar(64) PRIMARY KEY, sent integer)")
    cursor.execute(
        "INSERT INTO x_message (status, priority, backend, created_at, due_at, attempts, "
        "message_id, subject, from_email, recipients, refused_recipients, reason, claimed_by, "
        "claimed_until) SELECT 'sending', 1, 'default', now(), now(), 0, 'm' || g, 's', "
        "'f@example.com', '[\"a@example.com\"]', '{}', '', 'token', now() + interval '5 min' "
        "FROM generate_series(1, %s) g",
        [rows],
    )
    cursor.execute("INSERT INTO x_progress VALUES ('token', 0)")
    cursor.execute("VACUUM ANALYZE x_message")
    cursor.execute("SELECT min(id) FROM x_message")
    return int(cursor.fetchone()[0])


def main() -> None:
    executions = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    now = datetime.now(timezone.utc)
    recipients = json.dumps({"a@example.com": {"state": "sent", "code": 250, "detail": "OK"}})
    note = json.dumps({"code": 250, "detail": "OK", "started": now.isoformat()})
    with psycopg.connect(DSN, autocommit=True) as conn:
        cursor = conn.cursor()
        first = _setup(cursor, 2 * (executions + WARM_UP))
        cursor.execute("SELECT pg_backend_pid()")
        stat = f"/proc/{cursor.fetchone()[0]}/stat"

        def server_cpu() -> float:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        def attempt(i: int) -> list[Any]:
            return [first + i, now, 0.001, "default", "w", "sent", True, 250, "2.0.0", "", ""]

        def attempt_end(i: int) -> list[Any]:
            return [*attempt(i), "", recipients, ""]

        shapes: dict[str, tuple[str, Callable[[int], list[Any]]]] = {
            "outcome (mailroom's)": (
                OUTCOME,
                lambda i: [*attempt_end(i), now, now, first + i, "token"],
            ),
            "attempt only": (ATTEMPT_ONLY, attempt_end),
            "journal (no index)": (JOURNAL, lambda i: ["token", first + i, note]),
            "counter (HOT update)": (COUNTER, lambda i: [i, "token"]),
            "SELECT 1": ("SELECT 1", lambda i: []),
        }
        try:
            for name, (sql, params) in shapes.items():
                for i in range(WARM_UP):
                    cursor.execute(sql, params(i), prepare=True)
                before, started = server_cpu(), time.perf_counter()
                for i in range(WARM_UP, WARM_UP + executions):
                    cursor.execute(sql, params(i), prepare=True)
                cpu, wall = server_cpu() - before, time.perf_counter() - started
                print(
                    f"{name:22s} PostgreSQL {1e6 * cpu / executions:5.0f} us of CPU, "
                    f"{1e6 * wall / executions:5.0f} us a round trip"
                )
        finally:
            cursor.execute("DROP TABLE IF EXISTS x_attempt, x_message, x_journal, x_progress")


if __name__ == "__main__":
    main()
