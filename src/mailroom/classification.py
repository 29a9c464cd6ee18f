"""Classification: what one delivery attempt means, as a :class:`~mailroom.outcomes.Verdict`.

:func:`classify` turns a :class:`~mailroom.outcomes.DeliveryResult` into a
:class:`~mailroom.outcomes.Classification`. It is pure (no database, network, clock or settings)
and it never raises: whatever it does not recognise is retried within the message's budget and
flagged ``unexpected``, so an unknown error can neither stall the queue nor lose a message.

A raised error is matched against the user's rules first, then against :data:`TABLE`, a tuple of
:class:`Row` values tried in order. A row names exception classes by dotted name as they appear
in the exception's MRO (so this module never imports anymail, botocore, requests or sparkpost),
adds optional conditions (reply code or HTTP status, enhanced status code, text, provider error
code, errno) and gives a verdict, or names a small handler for the per-recipient cases.

The rows follow mailroom's delivery-error taxonomy (its classification table; the RFCs and
library sources are cited in the comments here). Order matters: ``ssl.SSLCertVerificationError``
is a ``ValueError``, ``AnymailRequestsAPIError`` is an ``OSError`` and ``SMTPRecipientsRefused``
can carry a 421, so specific rows come first and no row matches on a bare ``OSError`` or
``ValueError`` without a further condition.
"""

from __future__ import annotations

import errno
import logging
import re
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass

from mailroom.outcomes import (
    Classification,
    DeliveryResult,
    RecipientResult,
    RecipientState,
    Verdict,
)
from mailroom.rules_esp import anymail_recipient_statuses, api_facts

__all__ = ["Row", "Rule", "classify", "describe", "find_row"]

logger = logging.getLogger(__name__)

#: A user rule: return a Classification or a bare Verdict to decide, or None for "not mine".
Rule = Callable[[BaseException], Classification | Verdict | None]

NOTHING_SENT = "nothing was sent: the backend reported 0 messages sent"
_MAX_TEXT = 300
_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})(?!\d)")


def classify(result: DeliveryResult, *, rules: Sequence[Rule] = ()) -> Classification:
    """Say what ``result`` means. User ``rules`` are tried first; this never raises."""
    error = result.error
    try:
        if error is None:
            return _classify_returned(result)
        for rule in rules:
            decided = _apply_user_rule(rule, error)
            if decided is not None:
                return decided
        return _classify_error(error, result)[1]
    except Exception:  # a bug here must not stop the worker: retry within budget, loudly
        logger.exception("classification failed; treating the attempt as unexpected")
        if error is None:
            return Classification(
                verdict=Verdict.RETRY, reason="unexpected result", unexpected=True
            )
        return _unexpected(error)


def find_row(error: BaseException, result: DeliveryResult | None = None) -> Row | None:
    """Return the built-in row that decides ``error``, or None if none does (for debugging)."""
    return _classify_error(error, result or DeliveryResult(recipients=()))[0]


def describe(exc: BaseException) -> str:
    """A safe one-line ``"TypeName: text"``, or just the type name if ``str(exc)`` fails.

    ``str()`` can raise: anymail's ``AnymailAPIError`` built with a ``status_code`` but no
    ``response`` raises AttributeError from ``describe_response`` (taxonomy section 4.7).
    """
    name = type(exc).__name__
    text = _safe_str(exc)
    return f"{name}: {text}" if text else name


@dataclass(frozen=True)
class Facts:
    """What the row conditions look at, read once from the exception."""

    names: frozenset[str]
    cause_names: frozenset[str] = frozenset()
    code: int | None = None
    enhanced_code: str | None = None
    text: str = ""
    esp_code: str | None = None
    retry_after: float | None = None
    errno: int | None = None
    summary: str = ""


Handler = Callable[[BaseException, Facts, DeliveryResult], Classification]


@dataclass(frozen=True)
class Row:
    """One line of the table: which errors it matches and what they mean.

    ``Row(name, types, verdict, reason, **conditions)``; a row whose handler decides gives no
    verdict. Every condition given must hold; ``reason`` is followed by the server's own words.
    """

    name: str
    #: Dotted class names; the row matches if any is in the exception's MRO.
    types: tuple[str, ...]
    verdict: Verdict | None = None
    reason: str = ""
    _: KW_ONLY
    #: SMTP reply code or HTTP status; ``{None}`` matches "no status at all".
    codes: Container[int | None] | None = None
    #: RFC 3463 codes, ``X`` matching any class: ``("X.2.2",)``.
    enhanced: tuple[str, ...] = ()
    text: re.Pattern[str] | None = None
    #: Namespaced provider codes, see :mod:`mailroom.rules_esp`.
    esp_codes: frozenset[str] = frozenset()
    errnos: frozenset[int] = frozenset()
    #: Also match when ``types`` names the exception's ``__cause__`` (anymail wraps boto errors).
    wrapped: bool = False
    #: Seconds to pause when the server gave no ``Retry-After``.
    retry_after: float | None = None
    handler: Handler | None = None

    def __post_init__(self) -> None:
        if (self.verdict is None) == (self.handler is None):
            raise ValueError(f"row {self.name!r} needs exactly one of verdict and handler")

    def matches(self, facts: Facts) -> bool:
        names = facts.names | facts.cause_names if self.wrapped else facts.names
        return (
            not names.isdisjoint(self.types)
            and (self.codes is None or facts.code in self.codes)
            and (not self.enhanced or _enhanced_in(facts.enhanced_code, self.enhanced))
            and (self.text is None or bool(self.text.search(facts.text)))
            and (not self.esp_codes or facts.esp_code in self.esp_codes)
            and (not self.errnos or facts.errno in self.errnos)
        )


def _apply_user_rule(rule: Rule, error: BaseException) -> Classification | None:
    try:
        decided = rule(error)
    except Exception:
        logger.warning("classification rule %r raised; ignoring it", rule, exc_info=True)
        return None
    if decided is None or isinstance(decided, Classification):
        return decided
    if isinstance(decided, Verdict):
        facts = _facts(error)
        return Classification(
            verdict=decided,
            reason=describe(error),
            code=facts.code,
            enhanced_code=facts.enhanced_code,
        )
    logger.warning("classification rule %r returned %s; ignoring it", rule, type(decided).__name__)
    return None


def _classify_error(
    error: BaseException, result: DeliveryResult
) -> tuple[Row | None, Classification]:
    facts = _facts(error)
    for row in TABLE:
        if row.matches(facts):
            if row.handler is not None:
                return row, row.handler(error, facts, result)
            return row, _from_row(row, facts)
    return None, _unexpected(error, facts)


def _from_row(row: Row, facts: Facts) -> Classification:
    assert row.verdict is not None
    return Classification(
        verdict=row.verdict,
        reason=f"{row.reason}: {facts.summary}" if facts.summary else row.reason,
        code=facts.code,
        enhanced_code=facts.enhanced_code,
        retry_after=facts.retry_after if facts.retry_after is not None else row.retry_after,
    )


def _unexpected(error: BaseException, facts: Facts | None = None) -> Classification:
    # Retried within the message's (age-bounded) budget and flagged, so the worker logs it at
    # ERROR: unclassified must neither stall the queue nor be dropped (django-mailer #73, #91).
    return Classification(
        verdict=Verdict.RETRY,
        reason=f"unexpected {describe(error)}",
        code=facts.code if facts else None,
        enhanced_code=facts.enhanced_code if facts else None,
        unexpected=True,
    )


def _facts(error: BaseException) -> Facts:
    names = _mro_names(error)
    cause = error.__cause__
    cause_names = _mro_names(cause) if cause is not None else frozenset()
    smtp_code = getattr(error, "smtp_code", None)
    if isinstance(smtp_code, int):  # smtplib.SMTPResponseException and its subclasses
        text = _decode(getattr(error, "smtp_error", b""))
        return Facts(
            names,
            cause_names,
            code=smtp_code,
            enhanced_code=_enhanced(text),
            text=text,
            summary=f"{smtp_code} {text}".strip(),
        )
    api = api_facts(error)
    if api is not None:
        return Facts(
            names,
            cause_names,
            code=api.status,
            text=api.message or _safe_str(error),
            esp_code=api.esp_code,
            retry_after=api.retry_after,
            summary=api.summary or describe(error),
        )
    err_no = getattr(error, "errno", None)
    return Facts(
        names,
        cause_names,
        text=_safe_str(error),
        errno=err_no if isinstance(err_no, int) else None,
        summary=describe(error),
    )


# --- What a call that returned (did not raise) means ---------------------------------------

_ESP_STATES = {
    "sent": RecipientState.SENT,
    "queued": RecipientState.SENT,
    "invalid": RecipientState.FAILED,
    "rejected": RecipientState.FAILED,  # on the ESP's suppression list
    "failed": RecipientState.RETRY,  # "failed for some other reason", e.g. SES TRANSIENT_FAILURE
    "unknown": RecipientState.RETRY,
}


def _classify_returned(result: DeliveryResult) -> Classification:
    if result.sent_count == 0:
        # No recipients, an anymail pre_send cancel, or fail_silently: retrying would loop forever.
        # Checked first: an anymail_status left from such a call says nothing about this one.
        failed = RecipientResult(address="", state=RecipientState.FAILED, detail=NOTHING_SENT)
        results = _per_recipient(result.recipients, {}, failed)
        return _combine(results, verdict=Verdict.FAILED, reason=NOTHING_SENT)
    if result.refused:
        # smtplib's sendmail() accepted the message for some recipients and returned the rest;
        # Django's own backend drops this dict (taxonomy section 2.2), our delivery keeps it.
        refused = {addr: _smtp_refusal(addr, *reply) for addr, reply in result.refused.items()}
        sent = RecipientResult(address="", state=RecipientState.SENT)
        results = _per_recipient(result.recipients, refused, sent)
        if any(r.code == 421 for r in refused.values()):
            return _combine(results, verdict=Verdict.BACKEND_DOWN)
        return _combine(results)
    if result.esp_status:
        esp = {
            addr: RecipientResult(
                address=addr,
                state=_ESP_STATES.get(status, RecipientState.RETRY),
                detail=f"ESP status: {status}",
            )
            for addr, status in result.esp_status.items()
        }
        # The call succeeded; a recipient the ESP did not mention was not refused either.
        sent = RecipientResult(address="", state=RecipientState.SENT, detail="no ESP status")
        return _combine(_per_recipient(result.recipients, esp, sent))
    sent = RecipientResult(address="", state=RecipientState.SENT)
    return _combine(_per_recipient(result.recipients, {}, sent), reason="accepted for delivery")


# --- Per-recipient errors ------------------------------------------------------------------

_TOO_MANY_RECIPIENTS = re.compile(r"too many recipients", re.IGNORECASE)


def _smtp_recipients_refused(
    error: BaseException, facts: Facts, result: DeliveryResult
) -> Classification:
    replies = getattr(error, "recipients", None)
    if not isinstance(replies, Mapping) or not replies:
        return _unexpected(error, facts)
    refused = {addr: _smtp_refusal(addr, *reply) for addr, reply in replies.items()}
    down = next((r for r in refused.values() if r.code == 421), None)
    if down is not None:
        # smtplib closes the connection and raises at once on a RCPT 421 (taxonomy 1.2): the
        # server is going away, nothing about these recipients is known.
        return Classification(
            verdict=Verdict.BACKEND_DOWN,
            reason=f"server closing the connection: {down.detail}",
            code=421,
            enhanced_code=_enhanced(down.detail.partition(" ")[2]),
        )
    # The transaction was reset, so a recipient missing from the dict was not accepted either.
    untried = RecipientResult(address="", state=RecipientState.RETRY, detail="transaction reset")
    return _combine(_per_recipient(result.recipients, refused, untried))


def _anymail_recipients_refused(
    error: BaseException, facts: Facts, result: DeliveryResult
) -> Classification:
    # Raised only when every recipient is invalid or rejected (anymail raise_for_recipient_status).
    statuses = anymail_recipient_statuses(error) or {}
    refused = {
        addr: RecipientResult(address=addr, state=RecipientState.FAILED, detail=f"ESP status: {s}")
        for addr, s in statuses.items()
    }
    default = RecipientResult(address="", state=RecipientState.FAILED, detail="refused by the ESP")
    results = _per_recipient(result.recipients, refused, default)
    return Classification(
        verdict=Verdict.FAILED,
        reason=f"ESP refused every recipient: {facts.summary}",
        code=facts.code,
        recipients=tuple(results),
    )


def _smtp_refusal(address: str, code: int, message: bytes | str) -> RecipientResult:
    text = _decode(message)
    enhanced = _enhanced(text)
    if 400 <= code < 500:
        state = RecipientState.RETRY
    elif _enhanced_in(enhanced, ("X.5.3", "X.2.2")) or (
        code == 552 and _TOO_MANY_RECIPIENTS.search(text)
    ):
        # RFC 5321 4.5.3.1.10: treat 552 "too many recipients" as the 452 it should have been;
        # RFC 3463: X.5.3 asks to split the batch, X.2.2 (mailbox full) is persistent-transient.
        state = RecipientState.RETRY
    elif 500 <= code < 600:
        state = RecipientState.FAILED
    else:  # a code RFC 5321 does not define for RCPT: do not give up on the recipient
        state = RecipientState.RETRY
    return RecipientResult(address=address, state=state, code=code, detail=f"{code} {text}".strip())


def _per_recipient(
    recipients: Sequence[str], known: Mapping[str, RecipientResult], default: RecipientResult
) -> list[RecipientResult]:
    """One result per envelope recipient, in order; addresses compare case-insensitively."""
    by_lower = {addr.lower(): addr for addr in known}
    results, used = [], set()
    for address in recipients:
        key = address if address in known else by_lower.get(address.lower())
        found = known[key] if key is not None else default
        used.add(key)
        results.append(
            RecipientResult(
                address=address, state=found.state, code=found.code, detail=found.detail
            )
        )
    results.extend(r for addr, r in known.items() if addr not in used)
    return results


def _combine(
    results: list[RecipientResult], *, verdict: Verdict | None = None, reason: str = ""
) -> Classification:
    """The message's verdict from its recipients' states: retry only the deferred ones."""
    states = {r.state for r in results}
    if verdict is None:
        if states == {RecipientState.FAILED}:
            verdict = Verdict.FAILED
        elif states == {RecipientState.RETRY}:
            verdict = Verdict.RETRY
        elif RecipientState.RETRY in states:
            verdict = Verdict.RETRY_RECIPIENTS
        else:
            verdict = Verdict.SENT  # an empty list too: nothing left to deliver
    refusals = [r for r in results if r.state is not RecipientState.SENT]
    first = next((r for r in refusals if r.code is not None), None)
    return Classification(
        verdict=verdict,
        reason=reason or _recipients_reason(results, refusals),
        code=first.code if first else None,
        enhanced_code=_enhanced(first.detail.partition(" ")[2]) if first else None,
        recipients=tuple(results),
    )


def _recipients_reason(results: list[RecipientResult], refusals: list[RecipientResult]) -> str:
    if not refusals:
        return "accepted for every recipient"
    phrase = {RecipientState.FAILED: "refused permanently", RecipientState.RETRY: "deferred"}
    if len(results) == 1:
        return f"recipient {phrase[refusals[0].state]}: {refusals[0].detail}"
    counts = [
        f"{sum(r.state is state for r in results)} {word}"
        for state, word in ((RecipientState.SENT, "accepted"), *phrase.items())
        if any(r.state is state for r in results)
    ]
    return f"recipients {', '.join(counts)}; first: {refusals[0].address} {refusals[0].detail}"


# --- Small pure helpers --------------------------------------------------------------------


def _mro_names(exc: BaseException) -> frozenset[str]:
    return frozenset(f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__)


def _safe_str(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        return ""
    return " ".join(text.split())[:_MAX_TEXT]


def _decode(value: object) -> str:
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    return " ".join(text.split())[:_MAX_TEXT]


def _enhanced(text: str) -> str | None:
    """The RFC 3463 status code at the start of an SMTP reply text, e.g. ``"5.1.1"``."""
    match = _ENHANCED.match(text)
    return match.group(1) if match else None


def _enhanced_in(code: str | None, patterns: Sequence[str]) -> bool:
    if code is None:
        return False
    parts = code.split(".")
    return any(
        all(want in ("X", have) for want, have in zip(pattern.split("."), parts, strict=True))
        for pattern in patterns
    )


# --- The table ------------------------------------------------------------------------------


def _codes(namespace: str, *codes: object) -> frozenset[str]:
    return frozenset(f"{namespace}:{code}" for code in codes)


_4XX, _5XX = range(400, 500), range(500, 600)
_RESPONSE = "smtplib.SMTPResponseException"
_CONNECT, _HELO = "smtplib.SMTPConnectError", "smtplib.SMTPHeloError"
_AUTH, _SENDER, _DATA = (
    "smtplib.SMTPAuthenticationError",
    "smtplib.SMTPSenderRefused",
    "smtplib.SMTPDataError",
)
_REQUESTS_API = "anymail.exceptions.AnymailRequestsAPIError"
#: Errors with an HTTP status: anymail (requests ESPs and, via ``e.response``, SES), raw boto.
_API = (
    "anymail.exceptions.AnymailAPIError",
    "botocore.exceptions.ClientError",
    "sparkpost.exceptions.SparkPostAPIException",
)
_AWS = ("anymail.exceptions.AnymailAPIError", "botocore.exceptions.ClientError")
_SES_THROTTLED = _codes(
    "aws",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ACCOUNT_THROTTLED",
)
_DAILY_QUOTA = re.compile(r"daily (message |sending )?quota", re.IGNORECASE)
_RATE_LIMITED = re.compile(
    r"throttl|\brate.?limit|\brate exceeded|sending rate|relay limit|too many messages",
    re.IGNORECASE,
)
_NOT_VERIFIED = re.compile(r"not verified", re.IGNORECASE)
_NO_AUTH_METHOD = re.compile(r"no suitable authentication method", re.IGNORECASE)
_TLS = re.compile(r"\bTLS\b")
_CERTIFICATE = re.compile(r"certificate verify failed|hostname mismatch", re.IGNORECASE)
_ADDRESS_OR_HEADER = re.compile(r"address|header|newline", re.IGNORECASE)
_UNREACHABLE_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENETUNREACH", "EHOSTUNREACH", "ENETDOWN", "EHOSTDOWN", "EADDRNOTAVAIL")
    if hasattr(errno, name)
)


_DOWN, _MISCONFIGURED = Verdict.BACKEND_DOWN, Verdict.BACKEND_MISCONFIGURED
_RETRY, _FAILED = Verdict.RETRY, Verdict.FAILED

#: The built-in rules, tried in order after the user's. The first row that matches decides.
# fmt: off
TABLE: tuple[Row, ...] = (
    # Settings or installation wrong: no message can be sent (incl. InvalidMailer,
    # MailerDoesNotExist, AnymailConfigurationError, AnymailImproperlyInstalled and mailroom's
    # own BackendNotConfigured).
    Row("improperly-configured", ("django.core.exceptions.ImproperlyConfigured",),
        _MISCONFIGURED, "backend not configured"),
    # TLS first of all: a certificate failure is also a ValueError and an OSError.
    Row("tls-certificate", ("ssl.SSLCertVerificationError",), _MISCONFIGURED,
        "TLS certificate not trusted"),
    Row("tls-failure", ("ssl.SSLError",), _DOWN, "TLS failure"),
    Row("network-unreachable", ("builtins.ConnectionError", "socket.gaierror", "socket.herror",
        "builtins.TimeoutError"), _DOWN, "backend unreachable"),

    # SMTP. 421 is "closing transmission channel", possible on any command (RFC 5321 4.2.2);
    # smtplib has already closed the socket. It is about the server, never the message.
    Row("smtp-421", (_RESPONSE,), _DOWN, "server closing the connection", codes={421}),
    Row("smtp-recipients-refused", ("smtplib.SMTPRecipientsRefused",),
        handler=_smtp_recipients_refused),
    Row("smtp-greeting-4xx", (_CONNECT,), _DOWN, "server refused the connection for now",
        codes=_4XX),
    # RFC 5321 4.2.3: 554 at greeting is "No SMTP service here": wrong host, or we are blocked.
    Row("smtp-greeting-5xx", (_CONNECT,), _MISCONFIGURED, "no SMTP service at the configured host",
        codes=_5XX),
    Row("smtp-greeting-garbled", (_CONNECT,), _DOWN, "server greeting not understood"),
    Row("smtp-helo", (_HELO,), _DOWN, "server refused EHLO/HELO"),
    # RFC 4954 6: 454 4.7.0 is a temporary server failure, not bad credentials; 432 4.7.12
    # (password transition) and the 5xx need an operator.
    Row("smtp-auth-password-transition", (_AUTH,), _MISCONFIGURED, "password transition needed",
        codes={432}),
    Row("smtp-auth-4xx", (_AUTH,), _DOWN, "temporary authentication failure", codes=_4XX),
    Row("smtp-auth-5xx", (_AUTH,), _MISCONFIGURED, "authentication failed", codes=_5XX),
    # Account-wide limits sent as a 4xx to MAIL or DATA, e.g. SES "454 Throttling failure".
    # AWS: wait "up to 10 minutes" for the rate; a daily quota refills over 24 hours.
    Row("smtp-daily-quota", (_DATA, _SENDER), _DOWN, "daily sending quota exceeded",
        codes=_4XX, text=_DAILY_QUOTA, retry_after=3600),
    Row("smtp-rate-limited", (_DATA, _SENDER), _DOWN, "sending rate limited",
        codes=_4XX, text=_RATE_LIMITED, retry_after=60),
    # Sender identity fails every message from this sender (RFC 7372; SES "554 ... not verified").
    Row("smtp-sender-authentication", (_DATA, _SENDER), _MISCONFIGURED,
        "sender domain fails SPF/DKIM/DMARC", codes=_5XX,
        enhanced=("5.7.23", "5.7.24", "5.7.25", "5.7.26")),
    Row("smtp-sender-not-verified", (_DATA, _SENDER), _MISCONFIGURED,
        "sender identity not verified", codes=_5XX, text=_NOT_VERIFIED),
    Row("smtp-sender-4xx", (_SENDER,), _DOWN, "sender refused for now", codes=_4XX),
    # A sender refused for good. If it is the configured default sender this is really
    # B-config (every message fails), but telling the two apart needs settings, which this pure
    # module does not read; a user rule can make that call. RFC 5321 4.5.4.1: do not cache it.
    Row("smtp-sender-5xx", (_SENDER,), _FAILED, "sender refused", codes=_5XX),
    Row("smtp-data-too-big", (_DATA,), _FAILED, "message too big",
        enhanced=("5.3.4", "5.2.3")),  # RFC 3463: only ever permanent
    Row("smtp-data-mailbox-full", (_DATA,), _RETRY, "mailbox full",
        enhanced=("X.2.2",)),  # RFC 3463 3.3: persistent transient, despite a 552
    Row("smtp-data-policy", (_DATA,), _FAILED, "message refused by policy",
        codes={550, 554}, enhanced=("5.7.1",)),
    Row("smtp-data-4xx", (_DATA,), _RETRY, "message deferred", codes=_4XX),
    Row("smtp-data-5xx", (_DATA,), _FAILED, "message refused", codes=_5XX),
    Row("smtp-not-supported", ("smtplib.SMTPNotSupportedError",), _MISCONFIGURED,
        "server does not offer STARTTLS or AUTH"),
    Row("smtp-no-auth-method", ("smtplib.SMTPException",), _MISCONFIGURED,
        "no authentication mechanism in common", text=_NO_AUTH_METHOD),
    # A disconnect after end-of-data may follow a delivery (RFC 5321 4.5.3.2.6): at-least-once.
    Row("smtp-disconnected", ("smtplib.SMTPServerDisconnected",), _DOWN,
        "connection lost (after end of data the message may have been delivered)"),
    # A plain SMTPResponseException: STARTTLS refused (e.g. 454 "TLS not available") or a reply
    # smtplib could not read. RFC 5321 4.2: an unknown code goes by its first digit.
    Row("smtp-starttls-4xx", (_RESPONSE,), _DOWN, "TLS temporarily unavailable",
        codes=_4XX, text=_TLS),
    Row("smtp-reply-4xx", (_RESPONSE,), _RETRY, "temporary SMTP error", codes=_4XX),
    Row("smtp-reply-5xx", (_RESPONSE,), _FAILED, "permanent SMTP error", codes=_5XX),

    # HTTP transport (requests, for anymail's ESPs and python-sparkpost), before any status row.
    Row("http-certificate", ("requests.exceptions.SSLError",), _MISCONFIGURED,
        "ESP TLS certificate not trusted", text=_CERTIFICATE),
    Row("http-bad-url", ("requests.exceptions.InvalidURL", "requests.exceptions.MissingSchema",
        "requests.exceptions.InvalidSchema", "requests.exceptions.URLRequired"), _MISCONFIGURED,
        "ESP API URL invalid"),
    # A read timeout after a POST may follow acceptance: retrying risks a duplicate (anymail).
    Row("http-read-timeout", ("requests.exceptions.ReadTimeout",), _DOWN,
        "ESP did not answer in time (it may have accepted the message)"),
    Row("http-unreachable", ("requests.exceptions.ConnectionError",
        "requests.exceptions.Timeout"), _DOWN, "ESP unreachable"),
    Row("http-no-response", (_REQUESTS_API,), _DOWN, "no response from the ESP", codes={None}),
    # botocore: EndpointConnectionError is not an OSError; anymail's SES backend wraps all of
    # these in a plain AnymailAPIError with the original as __cause__.
    Row("aws-unreachable", ("botocore.exceptions.ConnectionError",
        "botocore.exceptions.EndpointConnectionError", "botocore.exceptions.ConnectTimeoutError",
        "botocore.exceptions.ReadTimeoutError", "botocore.exceptions.HTTPClientError"), _DOWN,
        "AWS endpoint unreachable", wrapped=True),
    Row("aws-no-credentials", ("botocore.exceptions.NoCredentialsError",
        "botocore.exceptions.PartialCredentialsError", "botocore.exceptions.NoRegionError"),
        _MISCONFIGURED, "AWS credentials or region missing", wrapped=True),

    # anymail: per-recipient refusals, and local errors in the message data.
    Row("anymail-recipients-refused", ("anymail.exceptions.AnymailRecipientsRefused",),
        handler=_anymail_recipients_refused),
    Row("anymail-invalid-message", ("anymail.exceptions.AnymailInvalidAddress",
        "anymail.exceptions.AnymailUnsupportedFeature",
        "anymail.exceptions.AnymailSerializationError"), _FAILED,
        "message cannot be sent as it is"),

    # Provider error codes overrule the HTTP status (Postmark and SparkPost error-code docs).
    Row("postmark-transient", _API, _DOWN, "Postmark maintenance or rate limit",
        esp_codes=_codes("postmark", 100, 429)),
    Row("postmark-account", _API, _MISCONFIGURED,
        "Postmark token, sender signature or account not usable",
        esp_codes=_codes("postmark", 10, 400, 401, 405, 412, 413)),
    Row("sparkpost-retry-later", _API, _DOWN, "SparkPost server resources unavailable",
        esp_codes=_codes("sparkpost", 1502)),  # a 400 that means "retry later"
    Row("sparkpost-sending-domain", _API, _MISCONFIGURED, "SparkPost sending domain not usable",
        esp_codes=_codes("sparkpost", 7000, 7001)),

    # Amazon SES: a raw ClientError (django-ses) or anymail's wrapper, or a bulk entry Status.
    Row("ses-daily-quota", _AWS, _DOWN, "SES daily quota exceeded", retry_after=3600,
        esp_codes=_codes("aws", "LimitExceededException", "ACCOUNT_DAILY_QUOTA_EXCEEDED")),
    Row("ses-daily-quota-throttling", _AWS, _DOWN, "SES daily quota exceeded", retry_after=3600,
        esp_codes=_SES_THROTTLED, text=_DAILY_QUOTA),
    Row("ses-throttled", _AWS, _DOWN, "SES sending rate exceeded", retry_after=60,
        esp_codes=_SES_THROTTLED),  # boto has already retried it 2-4 times
    Row("ses-account", _AWS, _MISCONFIGURED,
        "SES account, identity or configuration set not usable", esp_codes=_codes("aws",
        "AccountSendingPausedException", "SendingPausedException",
        "ConfigurationSetSendingPausedException", "AccountSuspendedException",
        "ConfigurationSetDoesNotExist", "ConfigurationSetDoesNotExistException",
        "MailFromDomainNotVerifiedException", "NotFoundException", "ACCOUNT_SUSPENDED",
        "ACCOUNT_SENDING_PAUSED", "CONFIGURATION_SET_SENDING_PAUSED",
        "CONFIGURATION_SET_NOT_FOUND", "MAIL_FROM_DOMAIN_NOT_VERIFIED",
        "INVALID_SENDING_POOL_NAME")),
    Row("aws-credentials-rejected", _AWS, _MISCONFIGURED, "AWS credentials rejected",
        esp_codes=_codes("aws", "ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId",
        "UnrecognizedClientException", "SignatureDoesNotMatch", "AccessDenied",
        "AccessDeniedException", "IncompleteSignature", "MissingAuthenticationToken")),
    Row("ses-not-verified", _AWS, _MISCONFIGURED, "SES identity not verified",
        esp_codes=_codes("aws", "MessageRejected", "MESSAGE_REJECTED"), text=_NOT_VERIFIED),
    Row("ses-rejected", _AWS, _FAILED, "SES rejected the message",
        esp_codes=_codes("aws", "MessageRejected", "MESSAGE_REJECTED", "BadRequestException",
        "INVALID_PARAMETER", "TEMPLATE_NOT_FOUND", "TemplateDoesNotExist")),
    Row("ses-transient", _AWS, _DOWN, "SES temporarily failing",
        esp_codes=_codes("aws", "TRANSIENT_FAILURE", "InternalFailure", "ServiceUnavailable",
        "RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete")),
    Row("ses-failed", _AWS, _RETRY, "SES could not send the message",
        esp_codes=_codes("aws", "FAILED")),

    # HTTP status, for every ESP: 5xx, 408 and 429 are the ESP's state, not the message's.
    Row("http-429", _API, _DOWN, "ESP rate limit", codes={429}),
    Row("http-420-sending-limit", _API, _DOWN, "ESP sending limit reached", codes={420},
        retry_after=3600),  # SparkPost 2101-2105: hourly, daily, sandbox or monthly limit
    Row("http-unavailable", _API, _DOWN, "ESP unavailable", codes=frozenset({408, *_5XX})),
    Row("http-credentials", _API, _MISCONFIGURED, "ESP refused the credentials",
        codes={401, 403}),  # SendGrid's 403 can be a "temporary block": pausing suits it too
    Row("http-not-found", _API, _MISCONFIGURED, "ESP API endpoint not found (API URL or region?)",
        codes={404}),
    Row("http-rejected", _API, _FAILED, "ESP rejected the message", codes={400, 413, 422}),

    # Local, deterministic message errors raised before any network I/O (Django 5.2 to 6.1).
    Row("bad-header", ("django.core.mail.message.BadHeaderError",), _FAILED,
        "header injection or malformed header"),
    Row("invalid-address", ("builtins.ValueError",), _FAILED, "malformed address or header",
        text=_ADDRESS_OR_HEADER),
    Row("unencodable", ("builtins.UnicodeError",), _FAILED, "message cannot be encoded"),
    Row("undecodable-message", ("mailroom.exceptions.UndecodableMessage",), _FAILED,
        "stored message cannot be rebuilt"),
    # Last, and only with an errno that says so: never classify by a bare OSError.
    Row("network-errno", ("builtins.OSError",), _DOWN, "network unreachable",
        errnos=_UNREACHABLE_ERRNOS),
)
# fmt: on
