"""What operators do to the queue: look at it, retry, resume. Used by the commands (and later
the admin), so that each action is written once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Min, Q
from django.utils import timezone

from . import signals
from .models import BackendState, Message, Status
from .retention import failed_since
from .wakeup import notify_workers


@dataclass(frozen=True, kw_only=True)
class QueueStatus:
    counts: dict[str, int]
    #: Seconds since the oldest due message became due (0 when nothing is due).
    oldest_due_age: float
    #: Queued messages waiting for a retry or a later send_at.
    waiting: int
    paused: list[dict[str, Any]]
    #: Messages that failed in the last hour: status failed, and the last attempt (or, for a
    #: message never attempted, its enqueue) within the hour.
    failed_last_hour: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            **self.counts,
            "waiting": self.waiting,
            "oldest_due_age_seconds": round(self.oldest_due_age, 3),
            "paused_backends": self.paused,
            "failed_last_hour": self.failed_last_hour,
        }


def queue_status(now: datetime | None = None) -> QueueStatus:
    now = now or timezone.now()
    counts = {status.value: 0 for status in Status}
    for row in Message.objects.values("status").annotate(n=Count("id")).order_by():
        counts[row["status"]] = row["n"]
    # One pass for the figures a monitor polls: the oldest due message, the waiting ones, and
    # the failures of the last hour.
    queued = Q(status=Status.QUEUED)
    figures = Message.objects.filter(status__in=[Status.QUEUED, Status.FAILED]).aggregate(
        oldest=Min("due_at", filter=queued & Q(due_at__lte=now)),
        waiting=Count("id", filter=queued & Q(due_at__gt=now)),
        failed_last_hour=Count(
            "id", filter=Q(status=Status.FAILED) & failed_since(now - timedelta(hours=1))
        ),
    )
    oldest, waiting = figures["oldest"], figures["waiting"]
    paused = [
        {
            "backend": s.alias,
            "paused_until": s.paused_until.isoformat() if s.paused_until else None,
            "verdict": s.verdict,
            "reason": s.reason,
            "failures": s.failures,
        }
        for s in BackendState.objects.filter(paused_until__gt=now).order_by("alias")
    ]
    return QueueStatus(
        counts=counts,
        oldest_due_age=(now - oldest).total_seconds() if oldest else 0.0,
        waiting=waiting,
        paused=paused,
        failed_last_hour=figures["failed_last_hour"],
    )


def retry_deferred(*, ids: list[int] | None = None, now: datetime | None = None) -> int:
    """Make queued messages that wait for a retry (or a later send_at) due now."""
    now = now or timezone.now()
    qs = Message.objects.waiting(now)
    if ids is not None:
        qs = qs.filter(pk__in=ids)
    changed = qs.update(due_at=now)
    if changed:
        notify_workers()
    return changed


def retry_failed(*, ids: list[int] | None = None, now: datetime | None = None) -> int:
    """Put failed messages back in the queue with a fresh retry budget.

    Their history is kept; recipients that already accepted the message are not sent it again
    (``pending_recipients`` is left as it is).
    """
    now = now or timezone.now()
    qs = Message.objects.filter(status=Status.FAILED)
    if ids is not None:
        qs = qs.filter(pk__in=ids)
    changed = qs.update(
        status=Status.QUEUED,
        attempts=0,
        budget_since=now,  # the age budget starts again too
        due_at=now,
        reason="requeued by an operator",
    )
    if changed:
        notify_workers()
    return changed


def resume_backends(aliases: list[str] | None = None) -> list[str]:
    """Lift backend pauses now. Returns the aliases that were paused."""
    qs = BackendState.objects.filter(paused_until__isnull=False)
    if aliases:
        qs = qs.filter(alias__in=aliases)
    resumed = list(qs.values_list("alias", flat=True))
    qs.update(paused_until=None, failures=0, verdict="", reason="")
    for alias in resumed:
        signals.send(signals.backend_resumed, BackendState, alias=alias)
    if resumed:
        notify_workers()
    return resumed


def cancel(*, ids: Iterable[int]) -> int:
    """Cancel queued messages so that they are never sent. Returns how many were cancelled.

    Only ``queued`` messages change: one that is ``sending`` is in a worker's hands and may
    already be on the wire, so cancelling it could not stop it; ``sent``, ``failed`` and
    ``cancelled`` are final. The status test is part of the UPDATE itself, so a worker that
    claims a message at the same moment either wins (the message stays ``sending``) or finds it
    cancelled: never both.
    """
    return Message.objects.filter(pk__in=list(ids), status=Status.QUEUED).update(
        status=Status.CANCELLED, reason="cancelled by an operator"
    )
