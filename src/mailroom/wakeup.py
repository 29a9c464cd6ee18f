"""Waking idle workers: a PostgreSQL NOTIFY when mail is queued, a poll everywhere else.

On PostgreSQL a trigger (migration 0003) sends ``NOTIFY mailroom_queued`` for every INSERT
into the queue; the notification is delivered when the enqueueing transaction commits. One
listener thread per worker process holds a dedicated autocommit connection (LISTEN needs one:
notifications are not delivered to a connection inside a transaction) and wakes every
delivery thread. If the listener's connection breaks, workers fall back to polling until it
reconnects, so a lost notification costs at most one poll interval.

Behind a pooler in transaction mode (PgBouncer) LISTEN cannot work: it runs in a server
session that goes back to the pool, and the listener's connection then waits on none.
Nothing fails; notifications just never come. So the listener first checks that a NOTIFY sent
from another connection reaches it, and if not says so once and leaves the workers to poll.
``MAILROOM["LISTEN_DATABASE"]`` points it at a database alias that reaches PostgreSQL directly.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Min

from .conf import get_settings
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
                params = _connection_params(get_settings().listen_database)
                with psycopg.connect(**params, autocommit=True) as conn:
                    if not _notifications_arrive(conn, params):
                        if not self._closed.is_set():  # not a stop that came mid-probe
                            logger.warning(
                                "mailroom: notifications do not reach this worker's LISTEN "
                                "connection (PostgreSQL behind a pooler in transaction "
                                "mode?): looking for mail every POLL_INTERVAL instead. Set "
                                "MAILROOM['LISTEN_DATABASE'] to a database alias that "
                                "reaches PostgreSQL directly."
                            )
                        return
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


#: How long a probe's NOTIFY may take to reach the listener (seconds): on a direct
#: connection it arrives in milliseconds; behind a transaction pooler, never.
PROBE_TIMEOUT = 5.0


def _notifications_arrive(listener: Any, params: dict[str, Any]) -> bool:
    """Whether a NOTIFY sent from another connection reaches ``listener``'s LISTEN.

    From another connection, because a session is sent its own notifications before its
    transaction ends: behind a pooler the listener's own NOTIFY would come back to it through
    the session it borrowed for that transaction, and prove nothing.
    """
    import psycopg

    channel = f"mailroom_probe_{secrets.token_hex(6)}"
    listener.execute(f"LISTEN {channel}")
    try:
        with psycopg.connect(**params, autocommit=True) as sender:
            sender.execute("SELECT pg_notify(%s, '')", [channel])
        return any(note.channel == channel for note in listener.notifies(timeout=PROBE_TIMEOUT))
    finally:
        listener.execute(f"UNLISTEN {channel}")


def _connection_params(alias: str | None = None) -> dict[str, Any]:
    params = dict(connections[alias or DEFAULT_DB_ALIAS].get_connection_params())
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
