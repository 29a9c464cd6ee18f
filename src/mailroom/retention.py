"""How long finished messages are kept: purging sent and failed ones, with their history.

The engine never deletes a row (a message ends ``sent``, ``failed`` or ``cancelled`` and stays);
this module is the one place rows go away, and only rows that have ended. A queued or sending
message is never touched: each batch is re-checked and locked inside its own transaction, so a
message an operator puts back in the queue meanwhile stays.

A message's age is counted from when it ended: ``sent_at`` for a sent message; for a failed or
cancelled one, its last attempt (or its enqueue time, if it was never attempted).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from .models import Attempt, Message, Status

#: What ``--failed-older-than`` covers: messages that ended without being delivered.
UNDELIVERED = (Status.FAILED, Status.CANCELLED)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LONGEST = 1000 * 366 * 86400


def parse_duration(text: str) -> timedelta:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` or plain seconds; ValueError else."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30d, 12h, 90m)")
    number, unit = match.groups()
    seconds = float(number) * _UNITS[unit]
    if seconds > _LONGEST:
        # Beyond it a date that old is out of datetime's range (year 1): refused here, with
        # words, rather than as an OverflowError at the subtraction.
        raise ValueError(f"not a duration: {text!r} is more than 1000 years")
    return timedelta(seconds=seconds)


def failed_since(moment: datetime) -> Q:
    """Failed or cancelled messages that ended at or after ``moment`` (filter on status too)."""
    return Q(last_attempt_at__gte=moment) | Q(last_attempt_at__isnull=True, created_at__gte=moment)


def _failed_before(moment: datetime) -> Q:
    return Q(last_attempt_at__lt=moment) | Q(last_attempt_at__isnull=True, created_at__lt=moment)


@dataclass(frozen=True, kw_only=True)
class PurgeCount:
    messages: int = 0
    attempts: int = 0

    def __add__(self, other: PurgeCount) -> PurgeCount:
        return PurgeCount(
            messages=self.messages + other.messages, attempts=self.attempts + other.attempts
        )


@dataclass(frozen=True, kw_only=True)
class PurgeReport:
    #: Per kind ("sent", "failed"): what was deleted (or, in a dry run, would be).
    counts: dict[str, PurgeCount]
    dry_run: bool

    @property
    def total(self) -> PurgeCount:
        return sum(self.counts.values(), PurgeCount())


def purgeable(
    *, sent_before: datetime | None = None, failed_before: datetime | None = None
) -> dict[str, Q]:
    """The filter for each kind of message a purge with these cutoffs removes."""
    kinds: dict[str, Q] = {}
    if sent_before is not None:
        kinds["sent"] = Q(status=Status.SENT, sent_at__lt=sent_before)
    if failed_before is not None:
        kinds["failed"] = Q(status__in=UNDELIVERED) & _failed_before(failed_before)
    return kinds


def purge(
    *,
    sent_older_than: timedelta | None = None,
    failed_older_than: timedelta | None = None,
    batch_size: int = 1000,
    dry_run: bool = False,
    now: datetime | None = None,
    on_batch: Callable[[str, PurgeCount], None] | None = None,
) -> PurgeReport:
    """Delete ended messages older than the given ages, with their attempts, in batches.

    ``on_batch(kind, count_so_far)`` is called after each batch (for a progress line). A dry
    run counts what would go, and deletes nothing.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    now = now or timezone.now()
    kinds = purgeable(
        sent_before=now - sent_older_than if sent_older_than is not None else None,
        failed_before=now - failed_older_than if failed_older_than is not None else None,
    )
    counts: dict[str, PurgeCount] = {}
    for kind, condition in kinds.items():
        if dry_run:
            counts[kind] = PurgeCount(
                messages=Message.objects.filter(condition).count(),
                attempts=Attempt.objects.filter(
                    message__in=Message.objects.filter(condition).values("pk")
                ).count(),
            )
            continue
        done = PurgeCount()
        while True:
            batch = _delete_batch(condition, batch_size)
            if not batch.messages:
                break
            done += batch
            if on_batch is not None:
                on_batch(kind, done)
        counts[kind] = done
    return PurgeReport(counts=counts, dry_run=dry_run)


def _delete_batch(condition: Q, batch_size: int) -> PurgeCount:
    # Ids only: a message's payload and MIME bytes are never loaded to delete it. Each batch is
    # its own short transaction, so a purge of millions never holds locks for long.
    with transaction.atomic():
        candidates = Message.objects.filter(condition).order_by("pk").values_list("pk", flat=True)
        if connection.features.has_select_for_update:
            # Lock the batch, and re-check the condition under the lock: a message an operator
            # requeued a moment ago (status back to queued) no longer matches and is left alone.
            candidates = candidates.select_for_update()
        ids = list(candidates[:batch_size])
        if not ids:
            return PurgeCount()
        # The condition again in both deletes: where there are no row locks (SQLite), the first
        # delete takes the database's write lock, and nothing can change the batch after that.
        batch = Message.objects.filter(condition, pk__in=ids)
        attempts, _ = Attempt.objects.filter(message__in=batch.values("pk")).delete()
        # only("pk"): the cascade to attempts finds nothing left, the contents go in one
        # DELETE by message id (nothing listens to their deletion), and none is read.
        _, per_model = batch.only("pk").delete()
    return PurgeCount(messages=per_model.get(Message._meta.label, 0), attempts=attempts)
