"""Claiming the next batch while this one is being delivered.

A claim takes a few round trips and builds a hundred rows: tens of milliseconds in which a
worker that claims only between batches sends nothing. :class:`ClaimAhead` runs the next claim
on a thread (and database connection) of its own as soon as a batch starts, so the delivery
thread finds its next batch ready. The batch claimed ahead is leased like any other: if the
worker dies holding it, the lease runs out and the messages go back to the queue; if the
worker stops, :meth:`ClaimAhead.close` releases it at once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection

from .claiming import release
from .models import Message
from .suppression import Drop

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claimed:
    """One claim's result: the rows, the token that holds them, when it was made, and the
    recipients among them suppressed since enqueue (by message pk)."""

    rows: list[Message]
    token: str
    at: datetime
    drops: dict[int, Drop] = field(default_factory=dict)


class ClaimAhead:
    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailroom-claim")
        self._pending: Future[Claimed] | None = None

    def start(self, claim: Callable[[], Claimed]) -> None:
        """Begin ``claim`` on the claiming thread (at most one claim is ahead at a time)."""
        assert self._pending is None, "a claim is already ahead"
        self._pending = self._executor.submit(_claiming, claim)

    def take(self) -> Claimed | None:
        """The claim started last (waiting for it if need be), or None if none was started.

        Raises what the claim raised, as a claim made on this thread would.
        """
        pending, self._pending = self._pending, None
        return pending.result() if pending is not None else None

    def close(self) -> None:
        """Release a batch claimed ahead and not taken, and close the thread's connection."""
        try:
            claimed = self.take()
        except Exception:
            # It failed: nothing is held; the error would have been raised by the next batch.
            logger.debug("mailroom: the claim made ahead failed", exc_info=True)
            claimed = None
        if claimed is not None and claimed.rows:
            release([m.pk for m in claimed.rows], token=claimed.token)
        self._executor.submit(_close_connection).result()
        self._executor.shutdown()


def _claiming(claim: Callable[[], Claimed]) -> Claimed:
    try:
        return claim()
    except Exception:
        # Whatever broke (a database restart, say) must not leave this thread a broken
        # connection for every claim after it: the next one connects afresh.
        with contextlib.suppress(Exception):
            connection.close()
        raise


def _close_connection() -> None:
    # Looked up on the claiming thread: Django's connections belong to the thread that
    # opened them.
    connection.close()
