"""Reading the facts out of ESP and AWS API errors, for the classification table.

Every HTTP-API error carries the same few facts in a different place: the HTTP status, the
provider's own error code, its message, and maybe a ``Retry-After`` header. This module finds them
by duck typing, so that neither it nor :mod:`mailroom.classification` imports anymail, requests,
botocore or python-sparkpost. Every reader here is defensive: a malformed response yields "no fact",
never an exception, because classification must never raise.

Provider error codes are namespaced (``"postmark:405"``, ``"sparkpost:1502"``, ``"aws:Throttling"``)
so that a Postmark ``ErrorCode`` 429 can never be mistaken for HTTP 429 or for another provider's
code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

_LABELS = {"postmark": "Postmark ErrorCode", "sparkpost": "SparkPost code", "aws": "AWS"}

# python-sparkpost formats each error as "{message} Code: {code} Description: {desc}".
_SPARKPOST_ERRORS_CODE = re.compile(r"\bCode: (\w+)")


@dataclass(frozen=True)
class ApiFacts:
    """What an API error says, wherever the library that raised it put it."""

    status: int | None = None
    #: The provider's error code, namespaced: ``"postmark:405"``, ``"aws:MessageRejected"``.
    esp_code: str | None = None
    #: The provider's own words about the error ("" when it gave none).
    message: str = ""
    retry_after: float | None = None

    @property
    def summary(self) -> str:
        parts = [f"HTTP {self.status}"] if self.status is not None else []
        if self.esp_code:
            namespace, _, code = self.esp_code.partition(":")
            parts.append(f"{_LABELS.get(namespace, namespace)} {code}")
        head = ", ".join(parts)
        if not self.message or (self.esp_code and self.message == self.esp_code.partition(":")[2]):
            return head
        return f"{head}: {self.message}" if head else self.message


def api_facts(error: BaseException) -> ApiFacts | None:
    """Return the API facts ``error`` carries, or None when it carries no API response at all."""
    response: Any = getattr(error, "response", None)
    cause_response: Any = getattr(error.__cause__, "response", None)
    if response is None and isinstance(cause_response, Mapping):
        response = cause_response
    if isinstance(response, Mapping):
        # botocore ClientError, or anymail's Amazon SES backend, which wraps it in a plain
        # AnymailAPIError with response=ClientError.response and the ClientError as __cause__.
        return _aws_facts(response)
    status = _int_or_none(getattr(error, "status_code", None))
    if status is None:  # python-sparkpost's SparkPostAPIException calls it .status
        status = _int_or_none(getattr(error, "status", None))
    if response is None:
        return ApiFacts(status=status) if status is not None else None
    if status is None:
        status = _int_or_none(getattr(response, "status_code", None))
    body = _json_body(response)
    esp_name = str(getattr(error, "esp_name", None) or "").lower()
    esp_code, message = _esp_code_and_message(body, esp_name)
    if esp_code is None:  # python-sparkpost keeps the codes only in its formatted .errors
        esp_code = _sparkpost_errors_code(getattr(error, "errors", None))
    headers = getattr(response, "headers", None)
    return ApiFacts(
        status=status,
        esp_code=esp_code,
        message=message,
        retry_after=_retry_after(headers) if headers is not None else None,
    )


def anymail_recipient_statuses(error: BaseException) -> dict[str, str] | None:
    """Per-recipient statuses from ``error.email_message.anymail_status``, if anymail set them.

    Reads ``.recipients`` only: ``repr(anymail_status)`` can raise when some recipients were
    rejected (its ``__repr__`` sorts a set holding None and str; taxonomy section 4.3).
    """
    try:
        status: Any = getattr(getattr(error, "email_message", None), "anymail_status", None)
        recipients: Any = getattr(status, "recipients", None)
        if not isinstance(recipients, Mapping) or not recipients:
            return None
        return {str(addr): str(getattr(rs, "status", None)) for addr, rs in recipients.items()}
    except Exception:  # anything odd in a half-built message: just no per-recipient facts
        return None


def parse_retry_after(value: str, date: str | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (RFC 9110 section 10.2.3).

    Delta-seconds are used as they are. An HTTP-date is measured against the response's own
    ``Date`` header, never against our clock: classification is pure, and both dates come from the
    server's clock, so their difference is what the server meant. Without a ``Date`` header an
    HTTP-date is ignored (None) and the retry policy's own backoff applies.
    """
    value = value.strip()
    if _is_decimal(value):
        return float(value)
    if not date:
        return None
    try:
        delta = (parsedate_to_datetime(value) - parsedate_to_datetime(date)).total_seconds()
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return max(0.0, delta) if math.isfinite(delta) else None


def _aws_facts(data: Mapping[str, Any]) -> ApiFacts:
    error = data.get("Error")
    results = data.get("BulkEmailEntryResults")
    meta = data.get("ResponseMetadata")
    status = _int_or_none(meta.get("HTTPStatusCode")) if isinstance(meta, Mapping) else None
    if isinstance(error, Mapping):
        code, message = error.get("Code"), error.get("Message")
    elif isinstance(results, list) and results and isinstance(results[0], Mapping):
        # SES SendBulkEmail succeeded at HTTP level (200) but every entry failed the same way, so
        # anymail raised with the whole response: the entry's Status is the real code.
        code, message, status = results[0].get("Status"), results[0].get("Error"), None
    else:
        code, message = None, None
    headers = meta.get("HTTPHeaders") if isinstance(meta, Mapping) else None
    return ApiFacts(
        status=status,
        esp_code=f"aws:{code}" if code else None,
        message=_one_line(message),
        retry_after=_retry_after(headers) if isinstance(headers, Mapping) else None,
    )


def _esp_code_and_message(body: object, esp_name: str) -> tuple[str | None, str]:
    if not isinstance(body, Mapping):
        return None, ""
    # Postmark answers 422 with {"ErrorCode": n, "Message": ...}: the code, not the status, says
    # whether the account or the message is at fault (taxonomy section 5.5).
    if "ErrorCode" in body and esp_name in ("", "postmark"):
        return f"postmark:{body['ErrorCode']}", _one_line(body.get("Message"))
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
        first = errors[0]
        message = _one_line(" ".join(str(first.get(k) or "") for k in ("message", "description")))
        # SparkPost: {"errors": [{"message", "code", "description"}]}; the code matters because
        # a 400 with code 1502 means "retry later" (SparkPost extended error codes).
        if "code" in first and esp_name in ("", "sparkpost"):
            return f"sparkpost:{first['code']}", message
        return None, message
    return None, _one_line(body.get("message") or body.get("Message"))


def _sparkpost_errors_code(errors: object) -> str | None:
    if isinstance(errors, list) and errors:
        match = _SPARKPOST_ERRORS_CODE.search(str(errors[0]))
        if match:
            return f"sparkpost:{match.group(1)}"
    return None


def _json_body(response: Any) -> object:
    try:
        return response.json()
    except Exception:  # not JSON, no body, or not a requests.Response at all
        return None


def _retry_after(headers: Any) -> float | None:
    value, date = _header(headers, "retry-after"), _header(headers, "date")
    return parse_retry_after(value, date) if value else None


def _header(headers: Any, name: str) -> str | None:
    # requests' headers are case-insensitive; botocore's HTTPHeaders are a plain lower-case dict.
    try:
        for key, value in headers.items():
            if str(key).lower() == name:
                return str(value)
    except Exception:
        return None
    return None


def _int_or_none(value: object) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _is_decimal(value.strip()) and len(value) < 20:
        return int(value)
    return None


def _is_decimal(text: str) -> bool:
    # ASCII digits only: str.isdigit() is also true of "²" and "¹" (a Latin-1 byte in a
    # header), which int() and float() refuse, and classification must never raise.
    return text.isascii() and text.isdigit()


def _one_line(value: object) -> str:
    return " ".join(str(value).split())[:200] if value else ""
