"""One claimed batch in progress: its lease, and the outcomes not yet written down.

How often outcomes are written is the size of the at-least-once window. A message the server
accepted but whose outcome was not yet written when its worker died will be sent again once
the lease runs out. With ``FLUSH_EVERY = 1`` (the default) each outcome is written before the
next message is sent, so a crash can duplicate at most the one message in flight; a larger
value writes in bulk (fewer queries, faster) and widens that window to as many messages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from django.db import DatabaseError, close_old_connections, connection

from .models import Message, Status
from .recording import Outcome, record

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a write is retried through a database outage before the batch gives up. The
#: messages stay claimed meanwhile; if it does give up, their lease expiry returns them.
DB_RETRY_SECONDS = 60.0


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

    def add(self, outcome: Outcome) -> None:
        self.unwritten.append(outcome)
        if len(self.unwritten) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if not self.unwritten:
            return
        outcomes, self.unwritten = self.unwritten, []
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
