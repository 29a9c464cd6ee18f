"""Waking idle workers: a PostgreSQL NOTIFY when mail is queued, a poll everywhere else.

On PostgreSQL a trigger (migration 0003) sends ``NOTIFY mailroom_queued`` for every INSERT
into the queue; the notification is delivered when the enqueueing transaction commits. One
listener thread per worker process holds a dedicated autocommit connection (LISTEN needs one:
notifications are not delivered to a connection inside a transaction) and wakes every
delivery thread. If the listener's connection breaks, workers fall back to polling until it
reconnects, so a lost notification costs at most one poll interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Min

from .models import BackendState, Message, Status

logger = logging.getLogger(__name__)

CHANNEL = "mailroom_queued"


class Waiter:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0
        self._closed = threading.Event()
        self._listener: threading.Thread | None = None

    def start(self) -> None:
        if connection.vendor == "postgresql":
            self._listener = threading.Thread(
                target=self._listen, name="mailroom-listen", daemon=True
            )
            self._listener.start()

    def stop(self) -> None:
        self._closed.set()
        self.wake_all()

    def wake_all(self) -> None:
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def wait(self, timeout: float, *, unless: Callable[[], bool] = lambda: False) -> None:
        """Block until woken or ``timeout`` seconds have passed; not at all if ``unless()``.

        ``unless`` closes a race: a wake-up that came between the caller's last look at its
        own state (a stop asked for) and this call is already counted when the wait begins,
        so it would not end it, and the caller would sleep a whole poll interval (a worker
        told to stop while it found nothing to send ignored the signal that long). Its state
        is looked at under the lock, where a wake-up cannot slip in unseen.
        """
        with self._condition:
            seen = self._generation
            self._condition.wait_for(lambda: self._generation != seen or unless(), timeout=timeout)

    def _listen(self) -> None:
        import psycopg

        delay = 0.5
        while not self._closed.is_set():
            try:
                with psycopg.connect(**_connection_params(), autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    delay = 0.5
                    # Anything queued while we were not listening is found by this wake-up.
                    self.wake_all()
                    while not self._closed.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.wake_all()
            except Exception as exc:  # the listener must outlive any database trouble
                if self._closed.is_set():
                    return
                logger.warning("mailroom: LISTEN connection lost (%s); polling meanwhile", exc)
                self._closed.wait(delay)
                delay = min(delay * 2, 10.0)


def _connection_params() -> dict[str, Any]:
    params = dict(connection.get_connection_params())
    # Django adds psycopg objects for its own cursors; the listener needs plain settings.
    for key in ("cursor_factory", "context", "prepare_threshold", "server_side_binding"):
        params.pop(key, None)
    return params


def notify_workers() -> None:
    """Wake idle workers now (after an operator made messages due, say). PostgreSQL only."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"NOTIFY {CHANNEL}")


def next_wakeup(now: datetime, ceiling: float) -> float:
    """Seconds until something may become sendable: a due time or a pause's end.

    Lets an idle worker sleep exactly as long as it can, never spinning while the queue
    is empty or its only due mail belongs to a paused backend.
    """
    paused = dict(
        BackendState.objects.filter(paused_until__gt=now).values_list("alias", "paused_until")
    )
    due = (
        Message.objects.filter(status=Status.QUEUED)
        .exclude(backend__in=list(paused))
        .aggregate(first=Min("due_at"))["first"]
    )
    moments = [m for m in (due, *paused.values()) if m is not None]
    if not moments:
        return ceiling
    return float(max(0.05, min(ceiling, (min(moments) - now).total_seconds())))
