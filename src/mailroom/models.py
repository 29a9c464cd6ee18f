"""The queued message, its append-only attempt history, and the state of each backend.

Queue vocabulary lives on :class:`MessageQuerySet`; state changes that the worker makes in bulk
live in :mod:`mailroom.recording`, so that the number of queries per batch stays constant.
"""

from __future__ import annotations

from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any, ClassVar

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .outcomes import Verdict


class Status(models.TextChoices):
    QUEUED = "queued", _("queued")
    SENDING = "sending", _("sending")
    SENT = "sent", _("sent")
    FAILED = "failed", _("failed")
    CANCELLED = "cancelled", _("cancelled")


class Priority(models.IntegerChoices):
    # Lower sorts first: the claim query orders by priority ascending.
    HIGH = 10, _("high")
    NORMAL = 20, _("normal")
    LOW = 30, _("low")

    @classmethod
    def coerce(cls, value: Priority | int | str) -> Priority:
        """Accept ``"high"``, ``Priority.HIGH`` or ``10``; anything else is a ValueError."""
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                raise ValueError(
                    f"unknown priority {value!r}: use 'high', 'normal' or 'low'"
                ) from None
        return cls(value)


class MessageQuerySet(models.QuerySet["Message"]):
    def queued(self) -> MessageQuerySet:
        return self.filter(status=Status.QUEUED)

    def due(self, now: datetime) -> MessageQuerySet:
        """Queued messages whose time has come, in the order they should be sent."""
        return self.filter(status=Status.QUEUED, due_at__lte=now).order_by(
            "priority", "due_at", "id"
        )

    def waiting(self, now: datetime) -> MessageQuerySet:
        """Queued messages waiting for a retry (or a ``send_at``) in the future."""
        return self.filter(status=Status.QUEUED, due_at__gt=now)

    def lease_expired(self, now: datetime) -> MessageQuerySet:
        return self.filter(status=Status.SENDING, claimed_until__lt=now)


class Message(models.Model):
    """One queued email. The engine never deletes a row: it ends ``sent``, ``failed`` or
    ``cancelled``, with the reason and its whole attempt history kept."""

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    priority = models.SmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    #: The delivery backend alias (a key of MAILROOM["BACKENDS"], or a MAILERS alias).
    backend = models.CharField(max_length=100, default="default")
    created_at = models.DateTimeField(default=timezone.now)
    #: Not before: the next time this message may be attempted.
    due_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    #: Attempts charged against the retry budget (backend outages are not charged).
    attempts = models.PositiveIntegerField(default=0)
    #: When the age budget (MAX_AGE) started, if not at ``created_at``: an operator's requeue.
    budget_since = models.DateTimeField(null=True, blank=True)

    # Copies of what an operator searches by; the payload is the source of truth.
    message_id = models.CharField(max_length=255, db_index=True)
    subject = models.CharField(max_length=255, blank=True)
    from_email = models.CharField(max_length=320, blank=True)
    #: Every envelope recipient (to + cc + bcc), as sent in RCPT TO.
    recipients = models.JSONField(default=list)
    #: The recipients still to deliver after a partial delivery; null means all of them.
    pending_recipients = models.JSONField(null=True, blank=True)
    #: Recipients refused for good so far: address -> the server's words. They are not retried.
    refused_recipients = models.JSONField(default=dict, blank=True)

    # What the message says (its payload and MIME bytes) is in MessageContent, written once.

    #: Why the message failed (or why its last attempt did not succeed), for people.
    reason = models.TextField(blank=True)

    # The lease: which worker holds this message while it is ``sending``, and until when.
    claimed_by = models.CharField(max_length=64, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[MessageQuerySet] = MessageQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        indexes = [
            # The claim query: WHERE status='queued' AND due_at <= now ORDER BY priority,
            # due_at, id. Whole here, because MySQL/MariaDB have no partial index; on
            # PostgreSQL migration 0006 makes it partial on status = 'queued', so that rows
            # being sent or done write nothing to it (and the claim's SQL says 'queued').
            models.Index(fields=["status", "priority", "due_at", "id"], name="mailroom_claim"),
            # Taking back expired leases.
            models.Index(fields=["status", "claimed_until"], name="mailroom_lease"),
            models.Index(fields=["created_at"], name="mailroom_created"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.subject!r} ({self.status})"

    @property
    def pending(self) -> list[str]:
        """The envelope recipients this message still has to reach."""
        if self.pending_recipients is None:
            return list(self.recipients)
        return list(self.pending_recipients)


class ContentKey(models.OneToOneField):  # type: ignore[type-arg]
    """The content's key, its message: on SQLite an ``integer`` column, the table's rowid.

    A ``OneToOneField`` to an auto id is ``bigint`` on SQLite, and a primary key of any type
    but exactly ``INTEGER`` is not the rowid: SQLite then keeps the rows by a rowid of their
    own and the key in a separate unique index, one more B-tree page written by every enqueue
    (measured: 11 pages written per one-message transaction, 10 with this key). Elsewhere it
    is the plain one-to-one column.
    """

    def db_type(self, connection: Any) -> str | None:
        if connection.vendor == "sqlite":
            return "integer"
        return super().db_type(connection)


class MessageContent(models.Model):
    """What a message says, stored once at enqueue and never updated.

    It lives apart from :class:`Message` because a message's row is updated at every status
    change (claimed, sent, retried) and a database writes an updated row whole: SQLite rewrites
    the record with every overflow page of a 1 MiB attachment, PostgreSQL logs the row image of
    a payload kept inline. Here those updates touch a row of a few hundred bytes.
    """

    message = ContentKey(
        Message, on_delete=models.CASCADE, primary_key=True, related_name="content"
    )
    #: The versioned JSON form of the EmailMessage (see mailroom.serialization). No pickle.
    payload = models.JSONField()
    #: The message rendered to MIME bytes at enqueue, for the SMTP fast path (optional).
    mime = models.BinaryField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return f"content of #{self.pk}"


class Attempt(models.Model):
    """One delivery attempt. Append-only: rows are inserted, never updated."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attempts_log")
    started_at = models.DateTimeField()
    duration = models.FloatField(help_text="seconds")
    backend = models.CharField(max_length=100)
    worker = models.CharField(max_length=64, blank=True)
    verdict = models.CharField(max_length=32, choices=[(v.value, v.value) for v in Verdict])
    #: Whether this attempt counted against the message's retry budget.
    charged = models.BooleanField(default=True)
    code = models.IntegerField(null=True, blank=True, help_text="SMTP reply code or HTTP status")
    enhanced_code = models.CharField(max_length=16, blank=True)
    error_type = models.CharField(max_length=255, blank=True)
    error_text = models.TextField(blank=True)
    reason = models.TextField(blank=True)
    #: address -> {"state": sent|retry|failed, "code": int, "detail": str}
    recipients = models.JSONField(default=dict)
    esp_message_id = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["message_id", "id"]
        indexes = [models.Index(fields=["started_at"], name="mailroom_attempt_started")]

    def __str__(self) -> str:
        return f"attempt on #{self.message_id}: {self.verdict}"


def _long_ago() -> datetime:
    return datetime(2000, 1, 1, tzinfo=dt_timezone.utc)


class BackendState(models.Model):
    """The health of one delivery backend, shared by every worker."""

    alias = models.CharField(max_length=100, primary_key=True)
    paused_until = models.DateTimeField(null=True, blank=True)
    verdict = models.CharField(max_length=32, blank=True)
    reason = models.TextField(blank=True)
    #: Consecutive backend faults; drives the backend's own backoff. Reset on success.
    failures = models.PositiveIntegerField(default=0)
    #: The rate limit's next free send slot (see mailroom.ratelimit); shared by every worker.
    send_slots_from = models.DateTimeField(default=_long_ago)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.alias

    def is_paused(self, now: datetime) -> bool:
        return self.paused_until is not None and self.paused_until > now


def snapshot(message: Message) -> dict[str, Any]:
    """A small dict for log lines and signals."""
    return {"id": message.pk, "message_id": message.message_id, "backend": message.backend}


class SuppressionSource(models.TextChoices):
    AUTO = "auto", _("automatic")
    MANUAL = "manual", _("by hand")


class Suppression(models.Model):
    """A recipient mailroom will not send to: dropped from new messages at enqueue and from
    queued ones at delivery (see :mod:`mailroom.suppression`)."""

    #: The lower-cased addr-spec (``user@example.com``, IDN domains in their ASCII form).
    address = models.CharField(max_length=320, unique=True)
    reason = models.TextField(blank=True)
    source = models.CharField(
        max_length=16, choices=SuppressionSource.choices, default=SuppressionSource.MANUAL
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["address"]

    def __str__(self) -> str:
        return self.address
