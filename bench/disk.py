"""What one SQLite commit costs on this machine's disk: the floor under mailroom's send there.

By default mailroom commits each sent message's outcome before the next message's final dot
(at most one duplicate per crash, issue #3), so on SQLite one connection cannot send a message
in less time than a commit takes. That time is the disk's (a rollback-journal commit waits for
five ``fdatasync`` calls) and does not shrink with a faster CPU, while raw smtplib's rate,
the ratios' denominator, does. The probe times commits shaped like the outcome writer's (an
INSERT and an UPDATE between ``BEGIN IMMEDIATE`` and ``COMMIT``) on a scratch file beside the
benchmark's databases: in the rollback journal as the writer's connection runs it
(``journal_mode = TRUNCATE``, see ``mailroom.sqlite_commits``) and in WAL with
``synchronous = NORMAL``.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import tempfile
import time
from typing import Any

from bench.databases import remove_sqlite_file

MODES = {
    "rollback": ("TRUNCATE", "FULL"),
    "wal": ("WAL", "NORMAL"),
}
COMMITS = 300


def commit_times(mode: str, commits: int = COMMITS) -> list[float]:
    """Seconds taken by each of ``commits`` outcome-shaped commits in ``mode`` (a MODES key)."""
    journal, synchronous = MODES[mode]
    path = os.path.join(tempfile.gettempdir(), f"mailroom_bench_disk_{mode}.sqlite3")
    remove_sqlite_file(path)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute(f"PRAGMA journal_mode = {journal}")
        db.execute(f"PRAGMA synchronous = {synchronous}")
        db.execute("CREATE TABLE message (id INTEGER PRIMARY KEY, status TEXT, token TEXT)")
        db.execute("CREATE INDEX message_status ON message (status)")
        db.execute("CREATE TABLE attempt (id INTEGER PRIMARY KEY, message_id INTEGER, at REAL)")
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO message (status, token) VALUES ('sending', 't')", [()] * commits
        )
        db.execute("COMMIT")
        times = []
        for pk in range(1, commits + 1):
            started = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO attempt (message_id, at) VALUES (?, ?)", (pk, time.time()))
            db.execute(
                "UPDATE message SET status = 'sent', token = '' WHERE id = ? AND token = 't'",
                (pk,),
            )
            db.execute("COMMIT")
            times.append(time.perf_counter() - started)
        return times
    finally:
        db.close()
        remove_sqlite_file(path)


def probe(commits: int = COMMITS) -> dict[str, Any]:
    """Median milliseconds per commit in each mode."""
    return {
        mode: {
            "median_ms": statistics.median(commit_times(mode, commits)) * 1000,
            "commits": commits,
        }
        for mode in MODES
    }


def merge(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Probes taken at several times (before and after the send suite) as one: the median of
    their medians, and each one's."""
    return {
        mode: {
            "median_ms": statistics.median(s[mode]["median_ms"] for s in samples),
            "each_ms": [s[mode]["median_ms"] for s in samples],
            "commits": sum(s[mode]["commits"] for s in samples),
        }
        for mode in MODES
    }
