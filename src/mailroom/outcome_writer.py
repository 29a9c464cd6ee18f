"""The thread that writes outcomes while the next message goes (databases other than
PostgreSQL with psycopg 3, which needs no thread: ``pipelined``).

A batch hands each outcome to a writer thread, which writes it on a connection of its own;
the batch's :meth:`~Member.settle` is the barrier that waits for it (see ``batch``). The two
threads meet through two queues and nothing else: the delivery thread puts outcomes on one,
the writer puts how many it has written (or failed to write) on the batch's other, and
``settle`` takes from that one only while something submitted is not yet accounted for. A
write the delivery thread does not have to wait for costs it no lock, no condition and no
wake-up (the barrier is the only place it ever blocks).

Whatever is waiting when the writer comes round is written together, so under load the
writes group themselves without ever holding back the order the barrier needs.

- On MySQL/MariaDB each batch has a writer of its own (:func:`private`): the server commits
  several connections' transactions at once by itself.
- On SQLite every batch of the process shares one writer (:func:`shared`). SQLite takes one
  writer at a time, and a connection that finds the file locked sleeps in SQLite's busy
  handler, a millisecond and more, before it tries again. With a writer per batch, the
  delivery threads of ``mailroom worker --concurrency N`` took turns at that lock, sleeping.
  With one writer they never meet there, and the outcomes the batches submitted while the
  last commit was under way go into the next commit together: one commit, and its fsyncs,
  for up to N messages (group commit). Each batch still waits only for its own outcomes, so
  its barrier is the same.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.db import connection

from . import sqlite_commits
from .batch import RecordingFailed, write_together

if TYPE_CHECKING:
    from .batch import Batch
    from .recording import Outcome

logger = logging.getLogger(__name__)


class Member:
    """One batch's side of a writer thread (the ``batch.OutcomeWriter`` interface)."""

    def __init__(self, thread: WriterThread, batch: Batch) -> None:
        self.batch = batch
        self._thread = thread
        self._done: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._submitted = 0  # both counters belong to the delivery thread
        self._settled = 0
        self._error: BaseException | None = None  # set by the writer before it reports

    def submit(self, outcome: Outcome) -> None:
        self._raise_error()
        self._submitted += 1
        self._thread.put(self, outcome)

    def settle(self) -> None:
        """Block until everything submitted is written; raise RecordingFailed if it was not."""
        while self._settled < self._submitted:
            self._settled += self._done.get()
        self._raise_error()

    def tidy(self) -> None:
        """Nothing to do here: the thread finishes each write itself."""

    def close(self) -> None:
        """Leave the thread (the caller settled first); the last member to leave stops it."""
        self._thread.leave()

    def failed(self, exc: BaseException) -> None:
        """(The writer thread) the write of some of this member's outcomes failed."""
        self._error = exc

    def accounted(self, count: int) -> None:
        """(The writer thread) ``count`` more outcomes are done with, written or not."""
        self._done.put(count)

    def _raise_error(self) -> None:
        if self._error is not None:
            raise RecordingFailed(str(self._error)) from self._error


class WriterThread:
    """A thread with its own database connection, writing the outcomes of its members.

    ``lock`` guards the count of members; ``on_last`` is called under it when the last one
    leaves, before the thread stops.
    """

    def __init__(
        self,
        lock: threading.Lock | threading.RLock | None = None,
        on_last: Callable[[WriterThread], None] | None = None,
    ) -> None:
        self._queue: queue.SimpleQueue[tuple[Member, Outcome] | None] = queue.SimpleQueue()
        self._members = 0
        self._lock = lock or threading.Lock()
        self._on_last = on_last
        self._thread = threading.Thread(target=self._run, name="mailroom-writer", daemon=True)
        self._thread.start()

    def join(self, batch: Batch) -> Member:
        with self._lock:
            self._members += 1
        return Member(self, batch)

    def put(self, member: Member, outcome: Outcome) -> None:
        self._queue.put((member, outcome))

    def leave(self) -> None:
        with self._lock:
            self._members -= 1
            last = self._members == 0
            if last and self._on_last is not None:
                self._on_last(self)
        if last:
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        tuned: object = None
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                parts: dict[Member, list[Outcome]] = {}
                while item is not None:
                    member, outcome = item
                    parts.setdefault(member, []).append(outcome)
                    if self._queue.empty():
                        break
                    item = self._queue.get()
                    if item is None:
                        self._queue.put(None)  # stop once this write is done
                try:
                    if connection.vendor == "sqlite":
                        tuned = _tune_sqlite(tuned)
                    _write(parts)
                except BaseException as exc:  # tuning failed: nothing was written
                    _failed(parts, exc)
                finally:
                    # Accounted for, written or not: settle() never waits for what is done.
                    for member, outcomes in parts.items():
                        member.accounted(len(outcomes))
        finally:
            connection.close()


def _write(parts: dict[Member, list[Outcome]]) -> None:
    """Write each member's outcomes, in one transaction where :func:`batch.write_together`
    can; a failure is that member's (or, written together, every member's)."""
    if len(parts) > 1:
        try:
            if write_together([(member.batch, outcomes) for member, outcomes in parts.items()]):
                return
        except BaseException as exc:
            _failed(parts, exc)
            return
    for member, outcomes in parts.items():
        try:
            member.batch.write_now(outcomes)
        except BaseException as exc:
            _failed({member: outcomes}, exc)


def _failed(parts: dict[Member, list[Outcome]], exc: BaseException) -> None:
    logger.error("mailroom: outcomes could not be written: %s", exc)
    for member in parts:
        member.failed(exc)


def _tune_sqlite(tuned: object) -> object:
    """Tune this thread's SQLite connection for a commit per outcome (``sqlite_commits``),
    once per connection. Returns the connection tuned."""
    connection.ensure_connection()
    raw = connection.connection
    if raw is not tuned:
        sqlite_commits.tune(raw)
    return raw


def private(batch: Batch) -> Member:
    """A writer thread of ``batch``'s own, stopped when the batch closes it."""
    return WriterThread().join(batch)


#: Held while a batch joins the shared thread and while its last member leaves it, so that a
#: batch never joins a thread that is about to stop. Reentrant: shared() joins under it.
_shared_lock = threading.RLock()
_shared: WriterThread | None = None


def shared(batch: Batch) -> Member:
    """The writer thread every batch of this process shares while any is open; the first
    batch starts it, the last one to close stops it (and its connection)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = WriterThread(_shared_lock, _forget)
        return _shared.join(batch)


def _forget(thread: WriterThread) -> None:
    global _shared
    if _shared is thread:
        _shared = None
