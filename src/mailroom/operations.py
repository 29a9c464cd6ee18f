"""What operators do to the queue: look at it, retry, resume. Used by the commands (and later
the admin), so that each action is written once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Min
from django.utils import timezone

from . import signals
from .models import BackendState, Message, Status


@dataclass(frozen=True, kw_only=True)
class QueueStatus:
    counts: dict[str, int]
    #: Seconds since the oldest due message became due (0 when nothing is due).
    oldest_due_age: float
    #: Queued messages waiting for a retry or a later send_at.
    waiting: int
    paused: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return {
            **self.counts,
            "waiting": self.waiting,
            "oldest_due_age_seconds": round(self.oldest_due_age, 3),
            "paused_backends": self.paused,
        }


def queue_status(now: datetime | None = None) -> QueueStatus:
    now = now or timezone.now()
    counts = {status.value: 0 for status in Status}
    for row in Message.objects.values("status").annotate(n=Count("id")).order_by():
        counts[row["status"]] = row["n"]
    oldest = Message.objects.filter(status=Status.QUEUED, due_at__lte=now).aggregate(
        oldest=Min("due_at")
    )["oldest"]
    waiting = Message.objects.waiting(now).count()
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
    )


def retry_deferred(*, ids: list[int] | None = None, now: datetime | None = None) -> int:
    """Make queued messages that wait for a retry (or a later send_at) due now."""
    now = now or timezone.now()
    qs = Message.objects.waiting(now)
    if ids is not None:
        qs = qs.filter(pk__in=ids)
    return qs.update(due_at=now)


def retry_failed(*, ids: list[int] | None = None, now: datetime | None = None) -> int:
    """Put failed messages back in the queue with a fresh retry budget.

    Their history is kept; recipients that already accepted the message are not sent it again
    (``pending_recipients`` is left as it is).
    """
    now = now or timezone.now()
    qs = Message.objects.filter(status=Status.FAILED)
    if ids is not None:
        qs = qs.filter(pk__in=ids)
    return qs.update(
        status=Status.QUEUED,
        attempts=0,
        budget_since=now,  # the age budget starts again too
        due_at=now,
        reason="requeued by an operator",
    )


def resume_backends(aliases: list[str] | None = None) -> list[str]:
    """Lift backend pauses now. Returns the aliases that were paused."""
    qs = BackendState.objects.filter(paused_until__isnull=False)
    if aliases:
        qs = qs.filter(alias__in=aliases)
    resumed = list(qs.values_list("alias", flat=True))
    qs.update(paused_until=None, failures=0, verdict="", reason="")
    for alias in resumed:
        signals.send(signals.backend_resumed, BackendState, alias=alias)
    return resumed
