"""Moving the mail still queued in django-mailer or django-post_office into mailroom.

A team switching over runs ``manage.py mailroom import`` once, with the old sender stopped and
the old app still installed. Each source row becomes a message queued through
:func:`~mailroom.enqueueing.enqueue_many`, so the same validation (and the suppression list)
applies as for any other message. In the same transaction the row leaves the old queue: it is
deleted, so that the old sender, were it started again, could not send it a second time. With
``keep`` the rows stay (to try an import on a copy); with ``dry_run`` everything is done and
then rolled back, so the counts are exactly what a real run would do.

A row that cannot be moved (undecodable, invalid) is left where it was and reported.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.mail import EmailMessage
from django.db import connection, models, transaction
from django.db.models import Q
from django.utils import timezone

from .conf import get_settings
from .enqueueing import enqueue_many
from .exceptions import InvalidMessage
from .models import Priority
from .unpickling import unpickle_mailer_message

logger = logging.getLogger(__name__)

#: The sources mailroom can import from: app label -> the name people know it by.
SOURCES = {"mailer": "django-mailer", "post_office": "django-post_office"}


@dataclass(frozen=True, kw_only=True)
class Skipped:
    """A source row that was not moved (it is still in the old queue), and why."""

    source_id: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class ImportReport:
    source: str
    #: Rows in the old queue when the import started.
    found: int = 0
    imported: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    #: Rows that vanished or were locked by the old sender while importing (it had them).
    busy: int = 0
    notes: list[str] = field(default_factory=list)
    dry_run: bool = False
    kept: bool = False


def installed_sources() -> list[str]:
    return [label for label in SOURCES if apps.is_installed(label)]


# --- The engine shared by both sources ---------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Item:
    source_id: int
    message: EmailMessage
    priority: Priority
    send_at: datetime | None = None
    expires_at: datetime | None = None
    backend: str | None = None

    @property
    def options(self) -> tuple[Any, ...]:
        return (self.priority, self.send_at, self.expires_at, self.backend)


def _move(
    source: str,
    queryset: models.QuerySet[Any],
    convert: Callable[[Any], _Item],
    *,
    batch_size: int,
    dry_run: bool,
    keep: bool,
) -> ImportReport:
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    ids = list(queryset.order_by("pk").values_list("pk", flat=True))
    imported, busy, skipped = 0, 0, []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        with transaction.atomic():
            rows = list(_locked(queryset.filter(pk__in=chunk)))
            busy += len(chunk) - len(rows)
            items = []
            for row in rows:
                try:
                    items.append(convert(row))
                except Exception as exc:  # anything a stored row holds must not stop the rest
                    skipped.append(Skipped(source_id=row.pk, reason=_describe(exc)))
            moved, invalid = _enqueue(items)
            skipped += invalid
            if moved and not keep:
                queryset.model._default_manager.filter(pk__in=moved).delete()
            imported += len(moved)
            if dry_run:
                transaction.set_rollback(True)
    for item in skipped:
        logger.warning("mailroom: %s row %s not imported: %s", source, item.source_id, item.reason)
    return ImportReport(
        source=source,
        found=len(ids),
        imported=imported,
        skipped=skipped,
        busy=busy,
        dry_run=dry_run,
        kept=keep,
    )


def _locked(queryset: models.QuerySet[Any]) -> models.QuerySet[Any]:
    # Where the database can, skip rows the old sender holds right now (django-mailer locks the
    # row it is sending): it will send and delete them itself.
    if connection.features.has_select_for_update_skip_locked:
        return queryset.select_for_update(skip_locked=True)
    return queryset


def _enqueue(items: Sequence[_Item]) -> tuple[list[int], list[Skipped]]:
    """Queue ``items`` with one enqueue_many per distinct set of options. Returns the source
    ids queued, and the items refused as invalid (enqueue_many writes nothing when it refuses,
    so the refused one is set aside and the rest tried again)."""
    groups: dict[tuple[Any, ...], list[_Item]] = {}
    for item in items:
        groups.setdefault(item.options, []).append(item)
    moved: list[int] = []
    skipped: list[Skipped] = []
    for group in groups.values():
        pending = list(group)
        while pending:
            first = pending[0]
            try:
                enqueue_many(
                    [item.message for item in pending],
                    priority=first.priority,
                    send_at=first.send_at,
                    expires_at=first.expires_at,
                    backend=first.backend,
                )
            except InvalidMessage as exc:
                bad = pending.pop(exc.index or 0)
                skipped.append(Skipped(source_id=bad.source_id, reason=str(exc)))
                continue
            moved += [item.source_id for item in pending]
            break
    return moved, skipped


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# --- django-mailer -----------------------------------------------------------------------

# django-mailer's priorities (mailer/models.py). "Deferred" is a message that failed and waits
# for `retry_deferred`, which puts it back at medium: mailroom retries it as normal.
_MAILER_PRIORITIES = {1: Priority.HIGH, 2: Priority.NORMAL, 3: Priority.LOW, 4: Priority.NORMAL}
_MAILER_DEFERRED = 4


def import_mailer(
    *, batch_size: int = 500, dry_run: bool = False, keep: bool = False
) -> ImportReport:
    """Move django-mailer's queue (its ``Message`` rows) into mailroom."""
    model = apps.get_model("mailer", "Message")
    queryset = model._default_manager.all()
    notes = []
    max_retries = getattr(settings, "MAILER_EMAIL_MAX_RETRIES", None)
    if max_retries is not None:
        # Deferred rows past MAILER_EMAIL_MAX_RETRIES would never be sent by django-mailer.
        given_up = Q(priority=_MAILER_DEFERRED, retry_count__gte=max_retries)
        left = queryset.filter(given_up).count()
        if left:
            notes.append(
                f"{left} deferred message(s) past MAILER_EMAIL_MAX_RETRIES were left in place"
            )
        queryset = queryset.exclude(given_up)
    report = _move(
        SOURCES["mailer"],
        queryset,
        _from_mailer,
        batch_size=batch_size,
        dry_run=dry_run,
        keep=keep,
    )
    return _with_notes(report, notes)


def _from_mailer(row: Any) -> _Item:
    message = unpickle_mailer_message(row.message_data)
    return _Item(
        source_id=row.pk,
        message=message,
        priority=_MAILER_PRIORITIES.get(row.priority, Priority.NORMAL),
    )


# --- django-post_office ------------------------------------------------------------------

# post_office.models: STATUS = (sent=0, failed=1, queued=2, requeued=3);
# PRIORITY = (low=0, medium=1, high=2, now=3). "now" is sent at once by post_office; here it
# can only be first in line.
_PO_WAITING = (2, 3)
_PO_PRIORITIES = {0: Priority.LOW, 1: Priority.NORMAL, 2: Priority.HIGH, 3: Priority.HIGH}


def import_post_office(
    *,
    batch_size: int = 500,
    dry_run: bool = False,
    keep: bool = False,
    now: datetime | None = None,
) -> ImportReport:
    """Move django-post_office's queued and requeued ``Email`` rows into mailroom.

    Each message is built by post_office itself (``Email.email_message()``: templates rendered,
    HTML alternative, headers, attachments read from its storage), so mailroom sends what
    post_office would have sent. Expired rows are left in place: post_office would not send them.
    """
    now = now or timezone.now()
    model = apps.get_model("post_office", "Email")
    waiting = model._default_manager.filter(status__in=_PO_WAITING)
    live = Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    notes = []
    expired = waiting.exclude(live).count()
    if expired:
        notes.append(f"{expired} expired message(s) were left in place")
    aliases = get_settings().backends

    def convert(row: Any) -> _Item:
        backend = None
        if row.backend_alias:
            if row.backend_alias in aliases:
                backend = row.backend_alias
            else:
                unknown.add(row.backend_alias)
        return _Item(
            source_id=row.pk,
            message=row.email_message(),
            priority=_PO_PRIORITIES.get(row.priority, Priority.NORMAL),
            send_at=row.scheduled_time,
            expires_at=row.expires_at,
            backend=backend,
        )

    unknown: set[str] = set()
    report = _move(
        SOURCES["post_office"],
        waiting.filter(live).prefetch_related("attachments"),
        convert,
        batch_size=batch_size,
        dry_run=dry_run,
        keep=keep,
    )
    if unknown:
        notes.append(
            f"backend alias(es) {', '.join(sorted(unknown))} are not mailroom backends: "
            "those messages were queued for the default backend"
        )
    return _with_notes(report, notes)


def _with_notes(report: ImportReport, notes: Iterable[str]) -> ImportReport:
    return dataclasses.replace(report, notes=[*report.notes, *notes])


IMPORTERS: dict[str, Callable[..., ImportReport]] = {
    "mailer": import_mailer,
    "post_office": import_post_office,
}
