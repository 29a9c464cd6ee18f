"""Database queries for one happy-path batch, at several batch sizes (a count, not a time).

Counted with the settings as shipped, and again with ``FLUSH_EVERY`` set to the batch size
(outcomes written in bulk once per batch) where this version of mailroom has that setting.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.backends.signals import connection_created
from django.test.utils import override_settings

from bench.tasks import messages, task
from bench.tasks.common import flush_tables

ATTEMPT_INSERT = 'INSERT INTO "mailroom_attempt"'


class StatementsOnEveryConnection:
    """What ``CaptureQueriesContext`` records (statements, BEGIN, COMMIT), on every connection.

    ``CaptureQueriesContext`` watches one connection; the engine may write outcomes from a
    thread of its own, with a connection of its own. Query logging is switched on for each
    connection open now and for each one opened meanwhile (Django's ``connection_created``).
    """

    def __init__(self) -> None:
        self._watched: list[tuple[Any, int]] = []
        self._lock = threading.Lock()
        self.statements: list[str] = []

    def _watch(self, conn: Any) -> None:
        with self._lock:
            conn.force_debug_cursor = True
            self._watched.append((conn, len(conn.queries_log)))

    def _on_created(self, sender: Any, connection: Any, **kwargs: Any) -> None:
        if all(conn is not connection for conn, _ in self._watched):
            self._watch(connection)

    def __enter__(self) -> StatementsOnEveryConnection:
        for conn in connections.all(initialized_only=True):
            self._watch(conn)
        connection_created.connect(self._on_created)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType
    ) -> None:
        connection_created.disconnect(self._on_created)
        for conn, start in self._watched:
            self.statements += [q["sql"] for q in list(conn.queries_log)[start:]]
            conn.force_debug_cursor = False


class NotesInTheOutcomeLog:
    """How many sends mailroom notes in SQLite's outcome log (``mailroom.outcome_log``, a file
    of its own beside the database, not a Django connection), where this mailroom has one."""

    def __init__(self) -> None:
        self.count = 0
        self._real: Any = None

    def __enter__(self) -> NotesInTheOutcomeLog:
        try:
            from mailroom.outcome_log import OutcomeLog
        except ImportError:
            return self
        real = self._real = OutcomeLog.append

        def counted(log: Any, *args: Any) -> None:
            self.count += 1
            real(log, *args)

        OutcomeLog.append = counted  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._real is not None:
            from mailroom.outcome_log import OutcomeLog

            OutcomeLog.append = self._real  # type: ignore[method-assign]


def _count_one_batch(size: int) -> tuple[int, int, int]:
    """Queue ``size`` messages, deliver them as one batch: (queries, attempt INSERTs, notes in
    the outcome log)."""
    from mailroom import enqueue_many
    from mailroom.models import Message
    from mailroom.worker import Engine, RunStats

    flush_tables()
    enqueue_many(messages.build_many(size))
    with StatementsOnEveryConnection() as queries, NotesInTheOutcomeLog() as notes:
        claimed = Engine(batch_size=size).run_batch(RunStats())
    sent = Message.objects.filter(status="sent").count()
    if claimed != size or sent != size:
        raise AssertionError(f"batch of {size}: claimed {claimed}, sent {sent}")
    # SQLite: Django splits a bulk INSERT above 999 parameters, so the attempts of a big
    # batch take several INSERTs; everything else must stay the same.
    statements = queries.statements
    inserts = sum(sql.startswith(ATTEMPT_INSERT) for sql in statements)
    return len(statements), inserts, notes.count


def _has_flush_every() -> bool:
    from mailroom import conf

    return "FLUSH_EVERY" in conf.DEFAULTS


@task
def per_batch(sizes: list[int]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    inserts: dict[str, int] = {}
    notes: dict[str, int] = {}
    bulk_flush: dict[str, int] = {}
    for size in sizes:
        counts[str(size)], inserts[str(size)], notes[str(size)] = _count_one_batch(size)
        if _has_flush_every():
            with override_settings(MAILROOM={**settings.MAILROOM, "FLUSH_EVERY": size}):
                bulk_flush[str(size)], _, _ = _count_one_batch(size)
    sent = sum(sizes) * (2 if bulk_flush else 1)
    return {
        "queries": counts,
        "attempt_inserts": inserts,
        "log_notes": notes,
        "bulk_flush": bulk_flush,
        "sent": sent,
    }
