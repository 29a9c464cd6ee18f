"""What the classification table's rows look at, and how a row matches.

:func:`read_facts` reads an exception once into :class:`Facts` (its class names, SMTP reply code
or HTTP status, RFC 3463 enhanced code, text, provider error code, errno); a :class:`Row` of
:data:`mailroom.rules.TABLE` matches on those facts only. The small readers here are pure and
never raise, because classification must never raise.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Sequence
from dataclasses import KW_ONLY, dataclass

from mailroom.outcomes import Classification, DeliveryResult, Verdict
from mailroom.rules_esp import api_facts

_MAX_TEXT = 300
_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})(?!\d)")


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
            and (not self.enhanced or enhanced_matches(facts.enhanced_code, self.enhanced))
            and (self.text is None or bool(self.text.search(facts.text)))
            and (not self.esp_codes or facts.esp_code in self.esp_codes)
            and (not self.errnos or facts.errno in self.errnos)
        )


def read_facts(error: BaseException) -> Facts:
    names = _mro_names(error)
    cause = error.__cause__
    cause_names = _mro_names(cause) if cause is not None else frozenset()
    smtp_code = getattr(error, "smtp_code", None)
    if isinstance(smtp_code, int):  # smtplib.SMTPResponseException and its subclasses
        text = decode_reply(getattr(error, "smtp_error", b""))
        return Facts(
            names,
            cause_names,
            code=smtp_code,
            enhanced_code=parse_enhanced(text),
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


def describe(exc: BaseException) -> str:
    """A safe one-line ``"TypeName: text"``, or just the type name if ``str(exc)`` fails.

    ``str()`` can raise: anymail's ``AnymailAPIError`` built with a ``status_code`` but no
    ``response`` raises AttributeError from ``describe_response`` (taxonomy section 4.7).
    """
    name = type(exc).__name__
    text = _safe_str(exc)
    return f"{name}: {text}" if text else name


def unexpected(error: BaseException, facts: Facts | None = None) -> Classification:
    # Retried within the message's (age-bounded) budget and flagged, so the worker logs it at
    # ERROR: unclassified must neither stall the queue nor be dropped (django-mailer #73, #91).
    return Classification(
        verdict=Verdict.RETRY,
        reason=f"unexpected {describe(error)}",
        code=facts.code if facts else None,
        enhanced_code=facts.enhanced_code if facts else None,
        unexpected=True,
    )


# --- Small pure helpers --------------------------------------------------------------------


def _mro_names(exc: BaseException) -> frozenset[str]:
    return frozenset(f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__)


def _safe_str(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        return ""
    return " ".join(text.split())[:_MAX_TEXT]


def decode_reply(value: object) -> str:
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    return " ".join(text.split())[:_MAX_TEXT]


def parse_enhanced(text: str) -> str | None:
    """The RFC 3463 status code at the start of an SMTP reply text, e.g. ``"5.1.1"``."""
    match = _ENHANCED.match(text)
    return match.group(1) if match else None


def enhanced_matches(code: str | None, patterns: Sequence[str]) -> bool:
    if code is None:
        return False
    parts = code.split(".")
    return any(
        all(want in ("X", have) for want, have in zip(pattern.split("."), parts, strict=True))
        for pattern in patterns
    )
