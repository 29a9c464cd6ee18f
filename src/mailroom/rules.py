"""The built-in classification rules: :data:`TABLE`, a tuple of :class:`~mailroom.matching.Row`.

The rows follow mailroom's delivery-error taxonomy (its classification table; the RFCs and
library sources are cited in the comments here). Order matters: ``ssl.SSLCertVerificationError``
is a ``ValueError``, ``AnymailRequestsAPIError`` is an ``OSError`` and ``SMTPRecipientsRefused``
can carry a 421, so specific rows come first and no row matches on a bare ``OSError`` or
``ValueError`` without a further condition.

This module is data: the conditions a row can state are defined by
:class:`~mailroom.matching.Row`, the per-recipient handlers live in :mod:`mailroom.recipients`,
and :func:`mailroom.classification.classify` tries the rows in order.
"""

from __future__ import annotations

import errno
import re

from mailroom.matching import Row
from mailroom.outcomes import Verdict
from mailroom.recipients import anymail_recipients_refused, smtp_recipients_refused

__all__ = ["TABLE"]


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
        handler=smtp_recipients_refused),
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
        handler=anymail_recipients_refused),
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
