"""SQLite in a rollback journal: sent messages noted in a small file beside the database.

The barrier (``batch``) wants each message's outcome to be durable before the next message's
final dot, so that a worker killed mid-batch sends at most one message twice. On a SQLite file
in a rollback journal (DELETE, TRUNCATE or PERSIST: SQLite's default, and the file owner's
choice) a commit to the database syncs the disk several times; on the benchmark machine it took
as long as the SMTP server takes to accept a whole message, once per message.

So the note that makes an outcome durable goes elsewhere: to ``<database>-mailroom-log``, a
SQLite file of mailroom's own in WAL mode with ``synchronous = NORMAL`` (about 20 microseconds
a commit here). The outcomes themselves are written to the database once per batch, in one
transaction, as ``FLUSH_EVERY`` would write them, and their notes are then removed. A worker
that dies between the two leaves its notes behind; whoever takes back its expired lease
(``logged_writer.recover``) writes them first, so those messages end ``sent``, with their
attempts, instead of being sent again.

The guarantee is the one SQLite gives a WAL database at ``synchronous = NORMAL``, which is what
mailroom runs on a database in WAL mode (``sqlite_commits``): a note survives the process being
killed; a power cut may lose the notes of the batches under way (the log's WAL is synced only
at its checkpoints), whose messages are then sent again when their lease runs out: never lost,
never a damaged file (the database's own commits keep their syncs).

Only plain sends are noted (sent to every recipient); anything else (a retry, a failure, a
partial delivery, a paused backend) is written to the database at once, as before. ``MAILROOM =
{"SQLITE_OUTCOME_LOG": False}`` turns the log off: one database commit per message again.

This module is the file alone (plain ``sqlite3``, a connection per thread and process); what
goes in it and how it is replayed is ``logged_writer``'s.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

#: Appended to the database's file name.
SUFFIX = "-mailroom-log"

#: How long a note waits for another thread or process holding the file's write lock (another
#: note, a batch dropping its notes, or a recovery replaying notes into the database under it)
#: before it gives up.
BUSY_TIMEOUT = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sent (
    token TEXT NOT NULL,
    message INTEGER NOT NULL,
    attempt TEXT NOT NULL,
    PRIMARY KEY (token, message)
)
"""


class Note:
    """One noted send: the batch's claim token, the message, its attempt row's values."""

    __slots__ = ("attempt", "message", "token")

    def __init__(self, token: str, message: int, attempt: dict[str, Any]) -> None:
        self.token = token
        self.message = message
        self.attempt = attempt


class Unreadable(ValueError):
    """A note whose attempt cannot be decoded (a damaged file): it is reported and dropped,
    and its message is sent again, as if it had never been noted."""

    def __init__(self, token: str, message: int, why: str) -> None:
        super().__init__(f"message {message} (claim {token}): {why}")
        self.token = token
        self.message = message


class Busy(sqlite3.OperationalError):
    """The log was held by another thread or process for :data:`BUSY_TIMEOUT`. Its notes are
    all there, only out of reach for now: nothing may act as if they were lost."""


class OutcomeLog:
    """The log file of one database, with one connection per thread (and per process: a
    connection is never used across a fork)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        # The threads of a process take turns here rather than at the file's lock: a thread
        # that finds SQLite's lock taken sleeps in its busy handler, a millisecond and more,
        # where one waiting on this lock wakes as soon as it is free.
        self._turn = threading.Lock()

    def append(self, token: str, message: int, attempt: Mapping[str, Any]) -> None:
        """Note that ``message`` of claim ``token`` was sent, with its attempt's values;
        committed (durable against the process dying) when this returns."""
        row = (token, message, _encode(attempt))
        db = self._db()
        with self._taking_turn():
            db.execute("INSERT INTO sent (token, message, attempt) VALUES (?, ?, ?)", row)

    def drop(self, token: str, messages: list[int]) -> None:
        """Drop the notes of ``messages`` of claim ``token`` (their sends are written down)."""
        db = self._db()
        with self._taking_turn(), _write_lock(db):
            db.executemany(
                "DELETE FROM sent WHERE token = ? AND message = ?", [(token, m) for m in messages]
            )

    @contextlib.contextmanager
    def recovering(self) -> Iterator[Recovery]:
        """Hold the file's write lock while notes are read, replayed and dropped."""
        db = self._db()
        with self._taking_turn(), _write_lock(db):
            yield Recovery(db)

    def noted(self) -> set[int]:
        """The messages noted, read without the write lock (a WAL reader waits for nobody)."""
        rows = self._db().execute("SELECT message FROM sent")
        return {int(message) for (message,) in rows}

    def close(self) -> None:
        """Close this thread's connection, if it has one."""
        db = getattr(self._local, "db", None)
        if db is not None:
            self._local.db = None
            db.close()

    @contextlib.contextmanager
    def _taking_turn(self) -> Iterator[None]:
        if not self._turn.acquire(timeout=BUSY_TIMEOUT):
            raise Busy(f"held by another thread for {BUSY_TIMEOUT:.0f} s")
        try:
            yield
        finally:
            self._turn.release()

    def _db(self) -> sqlite3.Connection:
        local = self._local
        db: sqlite3.Connection | None = getattr(local, "db", None)
        if db is None or local.pid != os.getpid():
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
            # WAL is the file's own setting, kept from the first connection on; NORMAL is
            # this connection's: a commit writes the WAL without syncing it.
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute(_SCHEMA)
            local.db, local.pid = db, os.getpid()
        return db


class Recovery:
    """The notes, under the write lock (``OutcomeLog.recovering``)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def notes(self) -> tuple[list[Note], list[Unreadable]]:
        """Every note, and those that could not be read."""
        notes, unreadable = [], []
        for token, message, attempt in self._db.execute(
            "SELECT token, message, attempt FROM sent ORDER BY token, message"
        ):
            try:
                notes.append(Note(token, int(message), _decode(attempt)))
            except (TypeError, ValueError, KeyError) as exc:
                unreadable.append(Unreadable(token, int(message), str(exc)))
        return notes, unreadable

    def drop(self, pairs: list[tuple[str, int]]) -> None:
        """Drop the notes of these (token, message) pairs."""
        self._db.executemany("DELETE FROM sent WHERE token = ? AND message = ?", pairs)


@contextlib.contextmanager
def _write_lock(db: sqlite3.Connection) -> Iterator[None]:
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        # SQLITE_BUSY (Python 3.11+ says so; 3.10 only in words).
        code = getattr(exc, "sqlite_errorcode", None)
        if code == getattr(sqlite3, "SQLITE_BUSY", 5) or "locked" in str(exc):
            raise Busy(str(exc)) from exc
        raise
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


#: json.dumps with any argument set makes an encoder per call: most of what encoding a note
#: cost (12 us against 4.5 with this one, made once; the output is the same).
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _encode(attempt: Mapping[str, Any]) -> str:
    values = dict(attempt)
    values["started_at"] = values["started_at"].isoformat()
    return _ENCODER.encode(values)


def _decode(text: str) -> dict[str, Any]:
    values = json.loads(text)
    if not isinstance(values, dict):
        raise ValueError("not an attempt")
    values["started_at"] = datetime.fromisoformat(values["started_at"])
    return values


_logs: dict[str, OutcomeLog] = {}
_logs_lock = threading.Lock()


def for_database(name: str) -> OutcomeLog:
    """The log of the SQLite database file ``name`` (one object per file in a process)."""
    path = _path(name)
    with _logs_lock:
        log = _logs.get(path)
        if log is None:
            log = _logs[path] = OutcomeLog(path)
        return log


def close_thread() -> None:
    """Close this thread's connections to every log (a delivery thread that is done)."""
    with _logs_lock:
        logs = list(_logs.values())
    for log in logs:
        log.close()


def exists(name: str) -> bool:
    """Whether the database file ``name`` has a log (whether anything could be left in it)."""
    return os.path.exists(_path(name))


def _path(name: str) -> str:
    # The real path: every process finds the same log, whatever its working directory and
    # whichever link it opened the database through.
    return os.path.realpath(name) + SUFFIX
