"""One claimed batch in progress: its lease, and the outcomes not yet written down.

How outcomes are written is the size of the at-least-once window. A message the server
accepted, whose outcome was not yet written when its worker died, is sent again once its
lease runs out. With ``FLUSH_EVERY = 1`` (the default) an outcome is written before the next
message is committed to its server, so one crash duplicates at most the message in flight.
Outside a transaction, the write happens while the next message's SMTP exchange is under
way (on a :class:`Writer` thread, or on PostgreSQL sent without waiting: ``pipelined``), and
:meth:`Batch.settle` (called just before that message's bytes and final dot) waits for it.
A larger ``FLUSH_EVERY`` writes in bulk instead: fewer queries, and a window of that many
messages.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from django.db import DatabaseError, close_old_connections, connection

from . import sqlite_commits
from .models import Message, Status
from .recording import Outcome, record

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a write is retried through a database outage before the batch gives up. The
#: messages stay claimed meanwhile; if it does give up, their lease expiry returns them.
DB_RETRY_SECONDS = 60.0


class RecordingFailed(DatabaseError):
    """The outcomes of delivered messages could not be written to the database.

    A DatabaseError, so that the worker waits for its database and the one-shot command
    exits non-zero, as for any other database failure.
    """


class OutcomeWriter(Protocol):
    """Writes outcomes while the next message goes; ``settle`` is the barrier."""

    def submit(self, outcome: Outcome) -> None: ...
    def tidy(self) -> None: ...
    def settle(self) -> None: ...
    def close(self) -> None: ...


class Writer:
    """A thread that writes outcomes, with its own database connection.

    Whatever is waiting when it comes round is written together, so under load the writes
    group themselves without ever holding back the order the barrier needs.

    The two threads meet through two queues and nothing else: the delivery thread puts
    outcomes on one, the writer puts how many it has written (or failed to write) on the
    other, and :meth:`settle` takes from that one only while something submitted is not yet
    accounted for. A write the delivery thread does not have to wait for costs it no lock,
    no condition and no wake-up (the barrier is the only place it ever blocks).
    """

    def __init__(self, batch: Batch) -> None:
        self._write = batch.write_now
        self._queue: queue.SimpleQueue[Outcome | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._submitted = 0  # both counters belong to the delivery thread
        self._settled = 0
        self._error: BaseException | None = None  # set by the writer before it reports
        self._thread = threading.Thread(target=self._run, name="mailroom-writer", daemon=True)
        self._thread.start()

    def submit(self, outcome: Outcome) -> None:
        self._raise_error()
        self._submitted += 1
        self._queue.put(outcome)

    def settle(self) -> None:
        """Block until everything submitted is written; raise RecordingFailed if it was not."""
        while self._settled < self._submitted:
            self._settled += self._done.get()
        self._raise_error()

    def tidy(self) -> None:
        """Nothing to do here: the thread finishes each write itself."""

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise RecordingFailed(str(self._error)) from self._error

    def _run(self) -> None:
        tuned: object = None
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                outcomes = [item]
                while not self._queue.empty():
                    more = self._queue.get()
                    if more is None:
                        self._queue.put(None)
                        break
                    outcomes.append(more)
                try:
                    if connection.vendor == "sqlite":
                        tuned = _tune_sqlite(tuned)
                    self._write(outcomes)
                except BaseException as exc:
                    logger.error("mailroom: outcomes could not be written: %s", exc)
                    self._error = exc
                finally:
                    # Accounted for, written or not: settle() never waits for what is done.
                    self._done.put(len(outcomes))
        finally:
            connection.close()


def _tune_sqlite(tuned: object) -> object:
    """Tune this thread's SQLite connection for a commit per outcome (``sqlite_commits``),
    once per connection. Returns the connection tuned."""
    connection.ensure_connection()
    raw = connection.connection
    if raw is not tuned:
        sqlite_commits.tune(raw)
    return raw


class Batch:
    def __init__(
        self,
        *,
        token: str,
        worker: str,
        claimed_at: datetime,
        lease: float,
        flush_every: int,
        text_limit: int,
        clock: Callable[[], datetime],
        writer: Callable[[Batch], OutcomeWriter] | None = None,
    ) -> None:
        self.token = token
        self.worker = worker
        self.lease = lease
        self.flush_every = max(1, flush_every)
        self.text_limit = text_limit
        self.clock = clock
        self.unwritten: list[Outcome] = []
        self.written: list[Outcome] = []
        self._renewed_at = claimed_at
        self._writer = writer(self) if writer and self.flush_every == 1 else None
        self._deferred: Callable[[], Outcome] | None = None

    def add(self, outcome: Outcome) -> None:
        if self._writer is not None:
            self._writer.submit(outcome)
            return
        self.unwritten.append(outcome)
        if len(self.unwritten) >= self.flush_every:
            self.flush()

    def defer(self, conclude: Callable[[], Outcome]) -> None:
        """Add the outcome ``conclude`` makes later, at :meth:`conclude_deferred` at the latest.

        For a message the server took: classifying it, deciding and starting its write can
        wait until the next message's first command is on its way, so that the work is done
        while the server reads it instead of between two messages. Every :meth:`settle`
        concludes first, so the barrier still covers it.
        """
        self.conclude_deferred()
        self._deferred = conclude

    def conclude_deferred(self) -> None:
        if self._deferred is not None:
            conclude, self._deferred = self._deferred, None
            self.add(conclude())

    def tidy(self) -> None:
        """Spare time (the server is reading a message): finish what the writer has written."""
        if self._writer is not None:
            self._writer.tidy()

    def settle(self) -> None:
        """Make sure every outcome added so far is written (the barrier before a commit)."""
        self.conclude_deferred()
        if self._writer is not None:
            self._writer.settle()
        elif self.flush_every == 1:
            self.flush()

    def flush(self) -> None:
        self.conclude_deferred()
        if self._writer is not None:
            self._writer.settle()
            return
        if self.unwritten:
            outcomes, self.unwritten = self.unwritten, []
            self._write(outcomes)

    def close(self) -> None:
        """Write what is left and stop the writer thread, if any."""
        self.conclude_deferred()
        if self._writer is not None:
            try:
                self._writer.settle()
            finally:
                self._writer.close()
            return
        self.flush()

    def write_now(self, outcomes: list[Outcome]) -> None:
        """Write ``outcomes`` on this thread's connection, retrying through an outage."""
        self._write(outcomes)

    def _write(self, outcomes: list[Outcome]) -> None:
        with_db_retry(
            lambda: record(
                outcomes,
                token=self.token,
                worker=self.worker,
                now=self.clock(),
                text_limit=self.text_limit,
            )
        )
        self.written.extend(outcomes)

    def keep_lease(self) -> None:
        """Extend the lease of what is still claimed, once a third of it has gone by.

        A batch that takes long (slow ESP calls, a rate limit) must not lose its messages to
        another worker while it is still working through them.
        """
        now = self.clock()
        if (now - self._renewed_at).total_seconds() < self.lease / 3:
            return
        # The writer's transaction must not be in the way of this one (MySQL would call
        # the S-to-X lock upgrade on a message row a deadlock).
        self.settle()
        with_db_retry(
            lambda: Message.objects.filter(claimed_by=self.token, status=Status.SENDING).update(
                claimed_until=now + timedelta(seconds=self.lease)
            )
        )
        self._renewed_at = now


def with_db_retry(operation: Callable[[], T], *, budget: float = DB_RETRY_SECONDS) -> T:
    """Run ``operation``, reconnecting through a database restart for up to ``budget`` s."""
    deadline = time.monotonic() + budget
    delay = 0.2
    while True:
        try:
            return operation()
        except DatabaseError as exc:
            if time.monotonic() + delay > deadline or connection.in_atomic_block:
                raise
            logger.warning("mailroom: database error (%s); retrying in %.1f s", exc, delay)
            # A broken connection must be dropped, or every later query fails the same way.
            connection.close()
            close_old_connections()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
