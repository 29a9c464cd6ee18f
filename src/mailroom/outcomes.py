"""The values that flow between delivery, classification and the retry policy.

Delivery produces a :class:`DeliveryResult` (what happened on the wire), classification turns it
into a :class:`Classification` (what it means), and the retry policy turns that into a
``Decision`` (what to do). All are small frozen values so that the policy code stays pure.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class Verdict(str, enum.Enum):
    """What one delivery attempt means for its message."""

    #: Accepted for every recipient still pending (some may have been refused for good).
    SENT = "sent"
    #: A transient fault of this message: try the whole message again later.
    RETRY = "retry"
    #: Some recipients were refused for now: try again later for just those.
    RETRY_RECIPIENTS = "retry_recipients"
    #: The message (every pending recipient) can never be delivered: stop and keep it.
    FAILED = "failed"
    #: The backend is unreachable or overloaded: pause it, do not charge the message.
    BACKEND_DOWN = "backend_down"
    #: The backend is misconfigured (credentials, TLS, settings): pause it for longer, alert.
    BACKEND_MISCONFIGURED = "backend_misconfigured"

    @property
    def is_backend_fault(self) -> bool:
        return self in (Verdict.BACKEND_DOWN, Verdict.BACKEND_MISCONFIGURED)


class RecipientState(str, enum.Enum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True, kw_only=True)
class RecipientResult:
    """The outcome of one attempt for one envelope recipient."""

    address: str
    state: RecipientState
    code: int | None = None
    detail: str = ""

    def as_json(self) -> dict[str, object]:
        data: dict[str, object] = {"state": self.state.value}
        if self.code is not None:
            data["code"] = self.code
        if self.detail:
            data["detail"] = self.detail
        return data


@dataclass(frozen=True, kw_only=True)
class DeliveryResult:
    """What happened when one message was handed to a backend, before any interpretation.

    ``recipients`` are the envelope recipients this attempt tried. Exactly one of these holds:
    ``error`` is set (the call raised), or the call returned (``sent_count`` from a generic
    backend, ``refused`` from the SMTP path, ``esp_status`` where django-anymail reported one).
    """

    recipients: tuple[str, ...]
    #: Per-recipient SMTP refusals returned (not raised) by ``smtplib.sendmail``.
    refused: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    error: BaseException | None = None
    #: What a generic backend's ``send_messages([message])`` returned (None on the SMTP path).
    sent_count: int | None = None
    #: django-anymail's per-recipient statuses:
    #: address -> sent|queued|invalid|rejected|failed|unknown.
    esp_status: Mapping[str, str] | None = None
    #: The provider's message id, when the backend reported one.
    esp_message_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class Classification:
    """The meaning of one delivery attempt, as decided by the rule table."""

    verdict: Verdict
    reason: str
    #: SMTP reply code or HTTP status, when there is one.
    code: int | None = None
    #: RFC 3463 enhanced status code such as ``"5.1.1"``, when there is one.
    enhanced_code: str | None = None
    #: Seconds the server asked us to wait (HTTP ``Retry-After``), when it did.
    retry_after: float | None = None
    #: True when no rule recognised the exception: retried within budget and logged at ERROR.
    unexpected: bool = False
    #: Per-recipient results, for the recipients this attempt tried.
    recipients: tuple[RecipientResult, ...] = ()

    @property
    def recipients_to_retry(self) -> tuple[str, ...]:
        return tuple(r.address for r in self.recipients if r.state is RecipientState.RETRY)
