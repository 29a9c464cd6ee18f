"""One claimed batch in progress: its lease, and the outcomes not yet written down.

How outcomes are written is the size of the at-least-once window. A message the server
accepted, whose outcome was not yet written when its worker died, is sent again once its
lease runs out. With ``FLUSH_EVERY = 1`` (the default) an outcome is written before the next
message is committed to its server, so one crash duplicates at most the message in flight.
Outside a transaction, the write happens while the next message's SMTP exchange is under
way (on a writer thread, ``outcome_writer``, or on PostgreSQL sent without waiting:
``pipelined``), and :meth:`Batch.settle` (called just before that message's final dot)
waits for it.
A larger ``FLUSH_EVERY`` writes in bulk instead: fewer queries, and a window of that many
messages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from django.db import DatabaseError, close_old_connections, connection

from .models import Message, Status
from .recording import Outcome, Share, can_record_together, record, record_together

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

    def share(self, outcomes: list[Outcome]) -> Share:
        """``outcomes`` as :func:`recording.record_together` takes them with other batches'."""
        return Share(outcomes, token=self.token, worker=self.worker, text_limit=self.text_limit)

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


def write_together(parts: Sequence[tuple[Batch, list[Outcome]]]) -> bool:
    """Write several batches' outcomes in one transaction, retrying through an outage, if
    :func:`recording.can_record_together` can. Returns False, having written nothing, if not.
    """
    shares = [batch.share(outcomes) for batch, outcomes in parts]
    if not can_record_together(shares):
        return False
    clock = parts[0][0].clock
    with_db_retry(lambda: record_together(shares, now=clock()))
    for batch, outcomes in parts:
        batch.written.extend(outcomes)
    return True


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
