"""The classification table, row by row, with real exception instances.

Every case builds the exception the way the library that raises it does (smtplib's codes and
bytes, a real ``requests.Response`` for anymail, a real botocore ``ClientError``, anymail's SES
wrapping with ``raise ... from``) and states which row must decide it and what it must mean.
No database, no network.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import smtplib
import socket
import ssl
from collections.abc import Mapping
from typing import Any

import pytest
import requests
from anymail.exceptions import (
    AnymailAPIError,
    AnymailConfigurationError,
    AnymailImproperlyInstalled,
    AnymailInvalidAddress,
    AnymailInvalidMailer,
    AnymailRecipientsRefused,
    AnymailRequestsAPIError,
    AnymailSerializationError,
    AnymailUnsupportedFeature,
)
from anymail.message import AnymailRecipientStatus, AnymailStatus
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage
from django.core.mail.message import BadHeaderError

from mailroom.classification import TABLE, Row, classify, describe, find_row
from mailroom.exceptions import BackendNotConfigured, UndecodableMessage
from mailroom.outcomes import (
    Classification,
    DeliveryResult,
    RecipientResult,
    RecipientState,
    Verdict,
)
from mailroom.rules_esp import api_facts, parse_retry_after

SENT, RETRY, FAILED = Verdict.SENT, Verdict.RETRY, Verdict.FAILED
RETRY_RECIPIENTS = Verdict.RETRY_RECIPIENTS
DOWN, MISCONFIGURED = Verdict.BACKEND_DOWN, Verdict.BACKEND_MISCONFIGURED
R_SENT, R_RETRY, R_FAILED = RecipientState.SENT, RecipientState.RETRY, RecipientState.FAILED

A, B, C = "a@example.com", "b@example.com", "c@example.com"


# --- Building real exceptions ---------------------------------------------------------------


def http_response(
    status: int, body: object = None, headers: Mapping[str, str] | None = None
) -> requests.Response:
    """A real requests.Response, so anymail's ``str(exc)`` and ``.json()`` work as in life."""
    response = requests.Response()
    response.status_code = status
    response.reason = "Reason"
    response.url = "https://api.example.com/email"
    response._content = b"" if body is None else json.dumps(body).encode()
    response.encoding = "utf-8"
    response.headers.update(headers or {})
    return response


def esp_error(
    status: int,
    body: object = None,
    headers: Mapping[str, str] | None = None,
    esp_name: str | None = None,
) -> AnymailRequestsAPIError:
    """What anymail's ``raise_for_status`` raises for an HTTP error response."""
    return AnymailRequestsAPIError(response=http_response(status, body, headers), esp_name=esp_name)


def esp_transport_error(original: requests.RequestException) -> AnymailRequestsAPIError:
    """What anymail's ``post_to_esp`` raises when requests itself fails: both types at once."""
    both = type("AnymailRequestsAPIError", (AnymailRequestsAPIError, type(original)), {})
    try:
        try:
            raise original
        except requests.RequestException as err:
            raise both("Error posting to https://api.example.com/email:") from err
    except AnymailRequestsAPIError as wrapped:
        return wrapped


def client_error(
    code: str, message: str = "", status: int = 400, headers: Mapping[str, str] | None = None
) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": dict(headers or {})},
    }
    return ClientError(response, "SendEmail")


def ses_wrapped(original: Exception) -> AnymailAPIError:
    """What anymail's Amazon SES backend raises: a plain AnymailAPIError ``from`` the boto error."""
    try:
        try:
            raise original
        except Exception as err:
            raise AnymailAPIError(str(err), response=getattr(err, "response", None)) from err
    except AnymailAPIError as wrapped:
        return wrapped


def ses_bulk_error(status: str, error: str = "") -> AnymailAPIError:
    """anymail's SES bulk send when every entry failed the same way (HTTP 200)."""
    response = {
        "BulkEmailEntryResults": [{"Status": status, "Error": error or status}],
        "ResponseMetadata": {"HTTPStatusCode": 200},
    }
    return AnymailAPIError(error or status, response=response)


def postmark(status: int, error_code: int, message: str = "") -> AnymailRequestsAPIError:
    return esp_error(status, {"ErrorCode": error_code, "Message": message}, esp_name="Postmark")


def sparkpost(status: int, code: str, message: str = "") -> AnymailRequestsAPIError:
    body = {"errors": [{"message": message, "code": code, "description": ""}]}
    return esp_error(status, body, esp_name="SparkPost")


class SparkPostAPIException(Exception):
    """Stand-in for python-sparkpost's exception (not installed here): same dotted name, same
    constructor, so the table sees exactly what the real one would give it."""

    __module__ = "sparkpost.exceptions"

    def __init__(self, response: requests.Response) -> None:
        errors = response.json()["errors"]
        self.status = response.status_code
        self.response = response
        self.errors = [
            f"{e['message']} Code: {e['code']} Description: {e['description']} \n" for e in errors
        ]
        super().__init__(f"Call to {response.url} returned {response.status_code}")


class MailerDoesNotExist(ImproperlyConfigured, KeyError):
    """Django 6.1's MailerDoesNotExist (absent from 5.2): same dotted name, same bases' MRO."""

    __module__ = "django.core.mail.exceptions"


def refused(*replies: tuple[str, int, bytes]) -> smtplib.SMTPRecipientsRefused:
    return smtplib.SMTPRecipientsRefused({addr: (code, msg) for addr, code, msg in replies})


def failing(error: BaseException, recipients: tuple[str, ...] = (A,)) -> DeliveryResult:
    return DeliveryResult(recipients=recipients, error=error)


# --- The table, row by row ------------------------------------------------------------------

# (id that reads as a specification, the exception, the verdict, the row that must decide it)
CASES: list[tuple[str, BaseException, Verdict, str]] = [
    # Configuration
    ("ImproperlyConfigured pauses the backend for an operator",
     ImproperlyConfigured("EMAIL_HOST is not set"), MISCONFIGURED, "improperly-configured"),
    ("AnymailConfigurationError is configuration",
     AnymailConfigurationError("missing POSTMARK_SERVER_TOKEN"), MISCONFIGURED,
     "improperly-configured"),
    ("AnymailImproperlyInstalled (also an ImportError) is configuration",
     AnymailImproperlyInstalled("boto3", "amazon-ses"), MISCONFIGURED, "improperly-configured"),
    ("AnymailInvalidMailer is configuration",
     AnymailInvalidMailer("bad MAILERS"), MISCONFIGURED, "improperly-configured"),
    ("MailerDoesNotExist (also a KeyError) is configuration",
     MailerDoesNotExist("no mailer 'bulk'"), MISCONFIGURED, "improperly-configured"),
    ("mailroom BackendNotConfigured is configuration",
     BackendNotConfigured(), MISCONFIGURED, "improperly-configured"),
    # TLS and the network
    ("certificate verify failure is configuration, not a bad message (it is a ValueError)",
     ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
     "failed: Hostname mismatch"), MISCONFIGURED, "tls-certificate"),
    ("other TLS failure means the backend is down",
     ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), DOWN, "tls-failure"),
    ("TLS EOF means the backend is down",
     ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), DOWN, "tls-failure"),
    ("connection refused means the backend is down",
     ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), DOWN,
     "network-unreachable"),
    ("connection reset means the backend is down",
     ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), DOWN,
     "network-unreachable"),
    ("DNS failure means the backend is down",
     socket.gaierror(socket.EAI_NONAME, "Name or service not known"), DOWN,
     "network-unreachable"),
    ("connect timeout means the backend is down",
     TimeoutError("timed out"), DOWN, "network-unreachable"),
    ("ENETUNREACH OSError means the backend is down",
     OSError(errno.ENETUNREACH, "Network is unreachable"), DOWN, "network-errno"),
    # SMTP: 421 anywhere
    ("MAIL 421 means the server is going away",
     smtplib.SMTPSenderRefused(421, b"4.7.0 try later", "app@example.com"), DOWN, "smtp-421"),
    ("DATA 421 means the server is going away",
     smtplib.SMTPDataError(421, b"4.3.2 shutting down"), DOWN, "smtp-421"),
    ("greeting 421 means the server is going away",
     smtplib.SMTPConnectError(421, b"4.3.2 too busy"), DOWN, "smtp-421"),
    ("a RCPT 421 inside SMTPRecipientsRefused means the server, not the recipients",
     refused((A, 421, b"4.7.0 try later")), DOWN, "smtp-recipients-refused"),
    # SMTP: connection, greeting, EHLO, AUTH
    ("greeting 4xx means the backend is down",
     smtplib.SMTPConnectError(450, b"4.3.2 busy"), DOWN, "smtp-greeting-4xx"),
    ("greeting 554 'No SMTP service here' is configuration",
     smtplib.SMTPConnectError(554, b"No SMTP service here"), MISCONFIGURED, "smtp-greeting-5xx"),
    ("unreadable greeting (-1) means the backend is down",
     smtplib.SMTPConnectError(-1, b"garbage"), DOWN, "smtp-greeting-garbled"),
    ("EHLO/HELO refused means the backend is down",
     smtplib.SMTPHeloError(501, b"Syntax: EHLO hostname"), DOWN, "smtp-helo"),
    ("AUTH 432 password transition needs an operator",
     smtplib.SMTPAuthenticationError(432, b"4.7.12 A password transition is needed"),
     MISCONFIGURED, "smtp-auth-password-transition"),
    ("AUTH 454 is a temporary server failure, not bad credentials",
     smtplib.SMTPAuthenticationError(454, b"4.7.0 Temporary authentication failure"), DOWN,
     "smtp-auth-4xx"),
    ("AUTH 535 bad credentials is configuration",
     smtplib.SMTPAuthenticationError(535, b"5.7.8 Authentication credentials invalid"),
     MISCONFIGURED, "smtp-auth-5xx"),
    ("AUTH 530 authentication required is configuration",
     smtplib.SMTPAuthenticationError(530, b"5.7.0 Authentication required"), MISCONFIGURED,
     "smtp-auth-5xx"),
    ("AUTH 538 encryption required is configuration",
     smtplib.SMTPAuthenticationError(538, b"5.7.11 Encryption required"), MISCONFIGURED,
     "smtp-auth-5xx"),
    ("server without STARTTLS/AUTH is configuration",
     smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server."),
     MISCONFIGURED, "smtp-not-supported"),
    ("no common AUTH mechanism is configuration",
     smtplib.SMTPException("No suitable authentication method found."), MISCONFIGURED,
     "smtp-no-auth-method"),
    ("disconnect (incl. a reply timeout) means the backend is down",
     smtplib.SMTPServerDisconnected("Connection unexpectedly closed: timed out"), DOWN,
     "smtp-disconnected"),
    ("STARTTLS 454 'TLS not available' means the backend is down",
     smtplib.SMTPResponseException(454, b"4.7.0 TLS not available due to temporary reason"),
     DOWN, "smtp-starttls-4xx"),
    ("other plain 4xx reply is retried",
     smtplib.SMTPResponseException(450, b"try again"), RETRY, "smtp-reply-4xx"),
    ("other plain 5xx reply fails the message",
     smtplib.SMTPResponseException(500, b"Line too long."), FAILED, "smtp-reply-5xx"),
    # SMTP: MAIL FROM and DATA
    ("SES 454 daily quota pauses the backend for long",
     smtplib.SMTPDataError(454, b"Throttling failure: Daily message quota exceeded."), DOWN,
     "smtp-daily-quota"),
    ("SES 454 sending rate pauses the backend briefly",
     smtplib.SMTPDataError(454, b"Throttling failure: Maximum sending rate exceeded."), DOWN,
     "smtp-rate-limited"),
    ("Gmail 450 4.2.1 peak relay limit on MAIL pauses the backend",
     smtplib.SMTPSenderRefused(450, b"4.2.1 Peak SMTP relay limit exceeded for this customer",
     "app@example.com"), DOWN, "smtp-rate-limited"),
    ("550 5.7.26 DMARC failure at DATA is sender configuration",
     smtplib.SMTPDataError(550, b"5.7.26 Unauthenticated email is not accepted due to the "
     b"domain's DMARC policy"), MISCONFIGURED, "smtp-sender-authentication"),
    ("550 5.7.23 SPF failure at MAIL is sender configuration",
     smtplib.SMTPSenderRefused(550, b"5.7.23 SPF validation failed", "app@example.com"),
     MISCONFIGURED, "smtp-sender-authentication"),
    ("SES 554 'Email address is not verified' is configuration",
     smtplib.SMTPDataError(554, b"Message rejected: Email address is not verified. The "
     b"following identities failed the check in region US-EAST-1: app@example.com"),
     MISCONFIGURED, "smtp-sender-not-verified"),
    ("MAIL 451 means the backend is down (every message has this sender)",
     smtplib.SMTPSenderRefused(451, b"4.3.0 Mail server temporarily rejected message.",
     "app@example.com"), DOWN, "smtp-sender-4xx"),
    ("MAIL 452 means the backend is down",
     smtplib.SMTPSenderRefused(452, b"4.3.1 Insufficient system storage", "app@example.com"),
     DOWN, "smtp-sender-4xx"),
    ("MAIL 550 fails the message (its own sender)",
     smtplib.SMTPSenderRefused(550, b"5.7.1 sender rejected", "someone@example.org"), FAILED,
     "smtp-sender-5xx"),
    ("DATA 552 5.3.4 message too big fails the message",
     smtplib.SMTPDataError(552, b"5.3.4 Message size exceeds fixed limit"), FAILED,
     "smtp-data-too-big"),
    ("DATA 552 5.2.3 message length over limit fails the message",
     smtplib.SMTPDataError(552, b"5.2.3 Message length exceeds administrative limit"), FAILED,
     "smtp-data-too-big"),
    ("DATA 552 5.2.2 mailbox full is retried despite the 5xx",
     smtplib.SMTPDataError(552, b"5.2.2 Mailbox full"), RETRY, "smtp-data-mailbox-full"),
    ("DATA 550 5.7.1 policy rejection fails the message",
     smtplib.SMTPDataError(550, b"5.7.1 Message rejected as spam"), FAILED, "smtp-data-policy"),
    ("DATA 554 5.7.1 policy rejection fails the message",
     smtplib.SMTPDataError(554, b"5.7.1 Message refused"), FAILED, "smtp-data-policy"),
    ("DATA 451 is retried",
     smtplib.SMTPDataError(451, b"4.3.0 Local error in processing"), RETRY, "smtp-data-4xx"),
    ("DATA 452 is retried",
     smtplib.SMTPDataError(452, b"4.3.1 Insufficient system storage"), RETRY, "smtp-data-4xx"),
    ("DATA other 5xx fails the message",
     smtplib.SMTPDataError(554, b"5.6.0 Transaction failed"), FAILED, "smtp-data-5xx"),
    # SMTP: RCPT
    ("every recipient refused 5xx fails the message",
     refused((A, 550, b"5.1.1 user unknown"), (B, 553, b"5.1.3 bad syntax")), FAILED,
     "smtp-recipients-refused"),
    ("every recipient deferred 4xx retries the message",
     refused((A, 450, b"4.2.1 try later"), (B, 451, b"4.7.1 Greylisted")), RETRY,
     "smtp-recipients-refused"),
    # HTTP transport
    ("ESP certificate failure is configuration",
     esp_transport_error(requests.exceptions.SSLError("[SSL: CERTIFICATE_VERIFY_FAILED] "
     "certificate verify failed")), MISCONFIGURED, "http-certificate"),
    ("ESP API URL without a scheme is configuration",
     esp_transport_error(requests.exceptions.MissingSchema("Invalid URL 'api.example.com'")),
     MISCONFIGURED, "http-bad-url"),
    ("ESP read timeout means the ESP is down",
     esp_transport_error(requests.exceptions.ReadTimeout("Read timed out.")), DOWN,
     "http-read-timeout"),
    ("ESP connection refused means the ESP is down",
     esp_transport_error(requests.exceptions.ConnectionError("Connection refused")), DOWN,
     "http-unreachable"),
    ("ESP connect timeout means the ESP is down",
     esp_transport_error(requests.exceptions.ConnectTimeout("Connect timed out")), DOWN,
     "http-unreachable"),
    ("raw requests ConnectionError (python-sparkpost) means the ESP is down",
     requests.exceptions.ConnectionError("Connection refused"), DOWN, "http-unreachable"),
    ("AnymailRequestsAPIError with no status means the ESP is down",
     esp_transport_error(requests.exceptions.TooManyRedirects("Exceeded 30 redirects")), DOWN,
     "http-no-response"),
    # botocore transport
    ("boto EndpointConnectionError (not an OSError) means SES is down",
     EndpointConnectionError(endpoint_url="https://email.us-east-1.amazonaws.com/"), DOWN,
     "aws-unreachable"),
    ("boto ConnectTimeoutError means SES is down",
     ConnectTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com/"), DOWN,
     "aws-unreachable"),
    ("boto ReadTimeoutError means SES is down",
     ReadTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com/"), DOWN,
     "aws-unreachable"),
    ("anymail-wrapped EndpointConnectionError means SES is down",
     ses_wrapped(EndpointConnectionError(endpoint_url="https://email.us-east-1.amazonaws.com/")),
     DOWN, "aws-unreachable"),
    ("boto NoCredentialsError is configuration",
     NoCredentialsError(), MISCONFIGURED, "aws-no-credentials"),
    ("anymail-wrapped NoCredentialsError is configuration",
     ses_wrapped(NoCredentialsError()), MISCONFIGURED, "aws-no-credentials"),
    # anymail local and per-recipient
    ("AnymailRecipientsRefused fails the message",
     AnymailRecipientsRefused(), FAILED, "anymail-recipients-refused"),
    ("AnymailInvalidAddress fails the message",
     AnymailInvalidAddress("Invalid email address 'nope'"), FAILED, "anymail-invalid-message"),
    ("AnymailUnsupportedFeature fails the message",
     AnymailUnsupportedFeature("Postmark does not support AMP"), FAILED,
     "anymail-invalid-message"),
    ("AnymailSerializationError (a TypeError) fails the message",
     AnymailSerializationError(), FAILED, "anymail-invalid-message"),
    # Postmark and SparkPost error codes
    ("Postmark 422 ErrorCode 100 maintenance means the ESP is down",
     postmark(422, 100, "Maintenance"), DOWN, "postmark-transient"),
    ("Postmark 422 ErrorCode 429 rate limit means the ESP is down",
     postmark(422, 429, "Rate limit exceeded"), DOWN, "postmark-transient"),
    ("Postmark 401 ErrorCode 10 bad token is configuration",
     postmark(401, 10, "Bad or missing API token"), MISCONFIGURED, "postmark-account"),
    ("Postmark 422 ErrorCode 400 sender signature not found is configuration",
     postmark(422, 400, "Sender signature not found"), MISCONFIGURED, "postmark-account"),
    ("Postmark 422 ErrorCode 405 not allowed to send is configuration",
     postmark(422, 405, "Not allowed to send"), MISCONFIGURED, "postmark-account"),
    ("Postmark 422 ErrorCode 412 account pending is configuration",
     postmark(422, 412, "Account is pending"), MISCONFIGURED, "postmark-account"),
    ("Postmark 422 other ErrorCode fails the message",
     postmark(422, 300, "Invalid 'From' address"), FAILED, "http-rejected"),
    ("SparkPost 400 code 1502 'retry later' means the ESP is down",
     sparkpost(400, "1502", "Server resources unavailable"), DOWN, "sparkpost-retry-later"),
    ("SparkPost 400 code 7001 invalid sending domain is configuration",
     sparkpost(400, "7001", "Invalid domain"), MISCONFIGURED, "sparkpost-sending-domain"),
    ("SparkPost 420 sending limit means the ESP is down",
     sparkpost(420, "2102", "Exceed Sending Limit (daily)"), DOWN, "http-420-sending-limit"),
    ("python-sparkpost exception goes by its status",
     SparkPostAPIException(http_response(503, {"errors": [{"message": "Service Unavailable",
     "code": "1900", "description": "retry"}]})), DOWN, "http-unavailable"),
    ("python-sparkpost exception goes by its error code first",
     SparkPostAPIException(http_response(400, {"errors": [{"message": "Invalid domain",
     "code": "7001", "description": "Unconfigured Sending Domain"}]})), MISCONFIGURED,
     "sparkpost-sending-domain"),
    # Amazon SES and boto ClientError
    ("SES LimitExceededException (daily quota) pauses the backend for long",
     client_error("LimitExceededException", "Daily message quota exceeded."), DOWN,
     "ses-daily-quota"),
    ("SES bulk ACCOUNT_DAILY_QUOTA_EXCEEDED pauses the backend for long",
     ses_bulk_error("ACCOUNT_DAILY_QUOTA_EXCEEDED"), DOWN, "ses-daily-quota"),
    ("SES v1 Throttling 'Daily message quota exceeded' pauses the backend for long",
     client_error("Throttling", "Daily message quota exceeded."), DOWN,
     "ses-daily-quota-throttling"),
    ("SES v1 Throttling 'Maximum sending rate exceeded' pauses the backend",
     client_error("Throttling", "Maximum sending rate exceeded."), DOWN, "ses-throttled"),
    ("SES v2 TooManyRequestsException pauses the backend",
     client_error("TooManyRequestsException", "Too many requests", 429), DOWN, "ses-throttled"),
    ("anymail-wrapped SES throttling pauses the backend",
     ses_wrapped(client_error("Throttling", "Maximum sending rate exceeded.")), DOWN,
     "ses-throttled"),
    ("SES AccountSendingPausedException is configuration",
     client_error("AccountSendingPausedException", "Sending paused"), MISCONFIGURED,
     "ses-account"),
    ("SES v2 SendingPausedException is configuration",
     client_error("SendingPausedException", "Sending paused"), MISCONFIGURED, "ses-account"),
    ("SES AccountSuspendedException is configuration",
     client_error("AccountSuspendedException", "Suspended"), MISCONFIGURED, "ses-account"),
    ("SES ConfigurationSetDoesNotExist is configuration",
     client_error("ConfigurationSetDoesNotExist", "No such set"), MISCONFIGURED, "ses-account"),
    ("SES MailFromDomainNotVerifiedException is configuration",
     client_error("MailFromDomainNotVerifiedException", "MX missing"), MISCONFIGURED,
     "ses-account"),
    ("SES v2 NotFoundException is configuration",
     client_error("NotFoundException", "Not found", 404), MISCONFIGURED, "ses-account"),
    ("AWS ExpiredToken (a 400) is configuration",
     client_error("ExpiredToken", "The security token included in the request is expired"),
     MISCONFIGURED, "aws-credentials-rejected"),
    ("SES MessageRejected 'not verified' is configuration",
     client_error("MessageRejected", "Email address is not verified. The following identities "
     "failed the check in region US-EAST-1: app@example.com"), MISCONFIGURED,
     "ses-not-verified"),
    ("anymail-wrapped SES MessageRejected 'not verified' is configuration",
     ses_wrapped(client_error("MessageRejected", "Email address is not verified.")),
     MISCONFIGURED, "ses-not-verified"),
    ("SES MessageRejected for content fails the message",
     client_error("MessageRejected", "Illegal address"), FAILED, "ses-rejected"),
    ("SES v2 BadRequestException fails the message",
     client_error("BadRequestException", "Invalid parameter"), FAILED, "ses-rejected"),
    ("SES bulk TRANSIENT_FAILURE for every entry means SES is down",
     ses_bulk_error("TRANSIENT_FAILURE"), DOWN, "ses-transient"),
    ("SES bulk FAILED for every entry is retried",
     ses_bulk_error("FAILED"), RETRY, "ses-failed"),
    ("AWS 5xx with an unlisted code means SES is down",
     client_error("InternalError", "oops", 500), DOWN, "http-unavailable"),
    # HTTP status, any ESP
    ("HTTP 429 means the ESP is down (rate limit)",
     esp_error(429, {"message": "Too many requests"}, {"Retry-After": "30"}), DOWN, "http-429"),
    ("HTTP 500 means the ESP is down", esp_error(500), DOWN, "http-unavailable"),
    ("HTTP 502 non-JSON means the ESP is down", esp_error(502), DOWN, "http-unavailable"),
    ("HTTP 503 means the ESP is down",
     esp_error(503, headers={"Retry-After": "120"}), DOWN, "http-unavailable"),
    ("HTTP 504 means the ESP is down", esp_error(504), DOWN, "http-unavailable"),
    ("HTTP 408 means the ESP is down", esp_error(408), DOWN, "http-unavailable"),
    ("anymail test-backend AnymailAPIError(status_code=503) means the ESP is down",
     AnymailAPIError("simulated", status_code=503), DOWN, "http-unavailable"),
    ("HTTP 401 is configuration", esp_error(401, {"message": "Forbidden"}), MISCONFIGURED,
     "http-credentials"),
    ("HTTP 403 is configuration (SendGrid's temporary block pauses too)",
     esp_error(403, {"errors": [{"message": "access forbidden"}]}), MISCONFIGURED,
     "http-credentials"),
    ("HTTP 404 (wrong API URL or region) is configuration",
     esp_error(404, {"message": "Domain not found"}), MISCONFIGURED, "http-not-found"),
    ("HTTP 400 fails the message",
     esp_error(400, {"errors": [{"message": "bad to", "field": "to"}]}), FAILED,
     "http-rejected"),
    ("HTTP 413 payload too large fails the message", esp_error(413), FAILED, "http-rejected"),
    ("HTTP 422 fails the message",
     esp_error(422, {"message": "Invalid template"}), FAILED, "http-rejected"),
    # Local message errors
    ("BadHeaderError fails the message",
     BadHeaderError("Header values can't contain newlines"), FAILED,
     # Django 6.0 made BadHeaderError an alias of ValueError, so the ValueError row decides.
     "invalid-address" if BadHeaderError is ValueError else "bad-header"),
    ("ValueError from address parsing fails the message",
     ValueError('Invalid address "bad\nvictim@example.com"'), FAILED, "invalid-address"),
    ("ValueError for newlines in an address fails the message",
     ValueError("Invalid address; address parts cannot contain newlines."), FAILED,
     "invalid-address"),
    ("UnicodeEncodeError in the message fails it",
     UnicodeEncodeError("ascii", "jörg", 1, 2, "ordinal not in range(128)"), FAILED,
     "unencodable"),
    ("a stored message that cannot be rebuilt fails",
     UndecodableMessage(), FAILED, "undecodable-message"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("error", "verdict", "row"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_table_row(error: BaseException, verdict: Verdict, row: str) -> None:
    result = classify(failing(error, (A, B)))
    assert result.verdict is verdict, result.reason
    assert not result.unexpected
    assert result.reason
    found = find_row(error)
    assert found is not None
    assert found.name == row


def test_every_row_is_specified_by_a_case() -> None:
    covered = {row for *_, row in CASES}
    if BadHeaderError is ValueError:
        # Django 6 cannot raise a distinct BadHeaderError: that row only serves Django 5.2.
        covered.add("bad-header")
    assert [r.name for r in TABLE if r.name not in covered] == []


def test_row_names_are_unique() -> None:
    names = [r.name for r in TABLE]
    assert len(names) == len(set(names))


def test_a_row_needs_a_verdict_or_a_handler() -> None:
    with pytest.raises(ValueError):
        Row("nothing", ("builtins.Exception",))


# --- Ordering traps -------------------------------------------------------------------------


def test_certificate_error_is_not_treated_as_a_bad_message_value_error() -> None:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed: Invalid address header")
    assert isinstance(error, ValueError)
    assert classify(failing(error)).verdict is MISCONFIGURED


def test_esp_http_error_is_not_treated_as_a_generic_os_error() -> None:
    error = esp_error(400, {"message": "Network is unreachable"})
    error.errno = errno.ENETUNREACH
    assert isinstance(error, OSError)
    assert classify(failing(error)).verdict is FAILED


def test_421_inside_recipients_refused_means_backend_down_not_refused_recipients() -> None:
    error = refused((A, 550, b"5.1.1 unknown"), (B, 421, b"4.7.0 closing"))
    result = classify(failing(error, (A, B)))
    assert result.verdict is DOWN
    assert result.code == 421
    assert result.enhanced_code == "4.7.0"
    assert result.recipients == ()  # the message goes back untouched


def test_requests_missing_schema_is_configuration_not_a_bad_message() -> None:
    error = requests.exceptions.MissingSchema("Invalid URL 'x': No scheme supplied")
    assert isinstance(error, ValueError)
    assert classify(failing(error)).verdict is MISCONFIGURED


def test_anymail_invalid_address_is_a_bad_message_even_without_address_wording() -> None:
    assert classify(failing(AnymailInvalidAddress("nope"))).verdict is FAILED


def test_postmark_error_code_429_is_not_http_429() -> None:
    result = classify(failing(postmark(422, 429)))
    assert (result.verdict, result.code) == (DOWN, 422)
    assert find_row(postmark(422, 429)).name == "postmark-transient"  # type: ignore[union-attr]


def test_postmark_style_body_from_another_esp_is_not_read_as_postmark() -> None:
    error = esp_error(422, {"ErrorCode": 405, "Message": "whatever"}, esp_name="Mailjet")
    assert classify(failing(error)).verdict is FAILED


# --- Codes, reasons and hints ---------------------------------------------------------------


def test_smtp_error_fills_code_enhanced_code_and_reason() -> None:
    result = classify(failing(smtplib.SMTPDataError(550, b"5.7.1 Message rejected as spam")))
    assert result.code == 550
    assert result.enhanced_code == "5.7.1"
    assert result.reason == "message refused by policy: 550 5.7.1 Message rejected as spam"


def test_single_refused_recipient_reads_as_a_sentence() -> None:
    result = classify(failing(refused((A, 550, b"5.1.1 user unknown"))))
    assert result.reason == "recipient refused permanently: 550 5.1.1 user unknown"
    assert (result.code, result.enhanced_code) == (550, "5.1.1")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (b"5.1.1 user unknown", "5.1.1"),
        (b"  4.7.0 try later", "4.7.0"),
        (b"5.1.10 recipient has null MX", "5.1.10"),
        (b"2.0.0 OK", "2.0.0"),
        (b"user unknown 5.1.1", None),
        (b"5.1 incomplete", None),
        (b"3.1.1 no such class", None),
        (b"5.1.1234 too long", None),
        (b"\xff\xfe not utf-8", None),
        (b"", None),
    ],
    ids=lambda v: repr(v),
)
def test_enhanced_code_is_parsed_from_the_start_of_the_reply(
    reply: bytes, expected: str | None
) -> None:
    result = classify(failing(smtplib.SMTPDataError(554, reply)))
    assert result.enhanced_code == expected


def test_undecodable_reply_bytes_are_replaced_not_fatal() -> None:
    result = classify(failing(smtplib.SMTPDataError(554, b"5.6.0 bad \xff byte")))
    assert result.verdict is FAILED
    assert "\ufffd" in result.reason


@pytest.mark.parametrize(
    ("error", "seconds"),
    [
        (smtplib.SMTPDataError(454, b"Throttling failure: Daily message quota exceeded."), 3600),
        (smtplib.SMTPDataError(454, b"Throttling failure: Maximum sending rate exceeded."), 60),
        (client_error("Throttling", "Maximum sending rate exceeded."), 60),
        (client_error("LimitExceededException", "Daily message quota exceeded."), 3600),
        (sparkpost(420, "2101", "Exceed Sending Limit (hourly)"), 3600),
        (esp_error(429, headers={"Retry-After": "30"}), 30),
        (esp_error(503, headers={"Retry-After": "120"}), 120),
        (client_error("TooManyRequestsException", "", 429, {"retry-after": "7"}), 7),
        (esp_error(429, headers={"Retry-After": "tomorrow"}), None),
        (esp_error(429, headers={"Retry-After": "\u00b2"}), None),
        (esp_error(429), None),
        (esp_error(500), None),
    ],
    ids=[
        "SES SMTP daily quota: an hour",
        "SES SMTP rate: a minute",
        "SES API rate: a minute",
        "SES API daily quota: an hour",
        "SparkPost 420 sending limit: an hour",
        "429 Retry-After delta-seconds",
        "503 Retry-After delta-seconds",
        "AWS Retry-After from HTTPHeaders",
        "unparseable Retry-After is ignored",
        "a Retry-After of a Latin-1 superscript is ignored, not an unexpected error",
        "429 without Retry-After leaves it to the retry policy",
        "500 gives no hint",
    ],
)
def test_pause_hint(error: BaseException, seconds: float | None) -> None:
    result = classify(failing(error))
    assert result.retry_after == seconds
    assert not result.unexpected


def test_server_retry_after_overrides_the_rows_default_pause() -> None:
    error = sparkpost(420, "2101")
    error.response.headers["Retry-After"] = "900"
    assert classify(failing(error)).retry_after == 900


def test_retry_after_http_date_is_measured_against_the_response_date_header() -> None:
    headers = {
        "Retry-After": "Wed, 21 Oct 2015 07:30:00 GMT",
        "Date": "Wed, 21 Oct 2015 07:28:00 GMT",
    }
    assert classify(failing(esp_error(429, headers=headers))).retry_after == 120


@pytest.mark.parametrize(
    ("value", "date", "seconds"),
    [
        ("120", None, 120.0),
        (" 0 ", None, 0.0),
        ("Wed, 21 Oct 2015 07:30:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT", 120.0),
        ("Wed, 21 Oct 2015 07:30:00 GMT", None, None),
        ("Wed, 21 Oct 2015 07:20:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("-5", None, None),
        ("1.5", None, None),
        ("soon", "Wed, 21 Oct 2015 07:28:00 GMT", None),
        ("\u00b2", None, None),
        ("9" * 400, None, math.inf),
    ],
    ids=[
        "delta-seconds",
        "zero with spaces",
        "HTTP-date minus Date",
        "HTTP-date without Date is ignored (no clock)",
        "HTTP-date in the past is now",
        "negative is not delta-seconds",
        "fraction is not delta-seconds",
        "garbage",
        "a Latin-1 superscript is no digit",
        "too big for a float is forever (the policy caps it)",
    ],
)
def test_parse_retry_after(value: str, date: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, date) == seconds


@pytest.mark.parametrize("status", ["\u00b2", "9" * 5000, "429 "])
def test_a_status_is_read_only_from_ascii_digits_and_never_raises(status: str) -> None:
    error = Exception("refused")
    error.status_code = status  # type: ignore[attr-defined]
    facts = api_facts(error)
    assert (facts.status if facts else None) == (429 if status == "429 " else None)


def test_esp_reason_names_the_status_code_and_message() -> None:
    result = classify(failing(postmark(422, 405, "Not allowed to send")))
    assert result.reason == (
        "Postmark token, sender signature or account not usable: "
        "HTTP 422, Postmark ErrorCode 405: Not allowed to send"
    )
    assert result.code == 422


def test_ses_reason_uses_the_aws_error_code_and_message() -> None:
    result = classify(failing(ses_wrapped(client_error("MessageRejected", "Illegal address"))))
    assert (
        result.reason == "SES rejected the message: HTTP 400, AWS MessageRejected: Illegal address"
    )
    assert result.code == 400


def test_ses_bulk_error_has_no_http_status_code() -> None:
    assert classify(failing(ses_bulk_error("TRANSIENT_FAILURE"))).code is None


# --- SMTPRecipientsRefused, per recipient ---------------------------------------------------


def states(classification: Classification) -> dict[str, RecipientState]:
    return {r.address: r.state for r in classification.recipients}


def test_all_recipients_refused_permanently_lists_each_as_failed() -> None:
    error = refused((A, 550, b"5.1.1 user unknown"), (B, 553, b"5.1.3 bad syntax"))
    result = classify(failing(error, (A, B)))
    assert result.verdict is FAILED
    assert result.recipients == (
        RecipientResult(address=A, state=R_FAILED, code=550, detail="550 5.1.1 user unknown"),
        RecipientResult(address=B, state=R_FAILED, code=553, detail="553 5.1.3 bad syntax"),
    )


def test_all_recipients_deferred_retries_the_whole_message_listing_each() -> None:
    error = refused((A, 450, b"4.2.1 slow down"), (B, 452, b"4.5.3 Too many recipients"))
    result = classify(failing(error, (A, B)))
    assert result.verdict is RETRY
    assert states(result) == {A: R_RETRY, B: R_RETRY}
    assert result.recipients_to_retry == (A, B)


def test_mixed_refusals_retry_only_the_deferred_recipients() -> None:
    error = refused((A, 550, b"5.1.1 user unknown"), (B, 451, b"4.7.1 Greylisted"))
    result = classify(failing(error, (A, B)))
    assert result.verdict is RETRY_RECIPIENTS
    assert states(result) == {A: R_FAILED, B: R_RETRY}
    assert result.recipients_to_retry == (B,)
    assert result.reason.startswith("recipients 1 refused permanently, 1 deferred; first: ")


@pytest.mark.parametrize(
    ("code", "reply"),
    [
        (552, b"Too many recipients"),
        (552, b"5.5.3 Too many recipients"),
        (550, b"5.5.3 Too many recipients"),
        (552, b"5.2.2 Mailbox full"),
        (452, b"4.5.3 Too many recipients"),
        (452, b"4.2.2 The email account that you tried to reach is over quota"),
    ],
    ids=[
        "552 too many recipients is really 452 (RFC 5321 4.5.3.1.10)",
        "552 5.5.3 asks to split the batch",
        "550 5.5.3 asks to split the batch",
        "552 5.2.2 mailbox full is persistent-transient (RFC 3463)",
        "452 too many recipients",
        "452 4.2.2 over quota",
    ],
)
def test_transient_despite_the_code_recipient_is_retried(code: int, reply: bytes) -> None:
    result = classify(failing(refused((A, 250, b"ok"), (B, code, reply)), (A, B)))
    assert states(result)[B] is R_RETRY


def test_recipient_missing_from_the_refusal_dict_is_retried_as_the_transaction_was_reset() -> None:
    result = classify(failing(refused((A, 550, b"5.1.1 unknown")), (A, B)))
    assert result.verdict is RETRY_RECIPIENTS
    assert states(result) == {A: R_FAILED, B: R_RETRY}


def test_refused_addresses_match_recipients_case_insensitively() -> None:
    result = classify(failing(refused(("A@Example.com", 550, b"5.1.1 unknown")), (A,)))
    assert result.verdict is FAILED
    assert states(result) == {A: R_FAILED}


# --- AnymailRecipientsRefused ---------------------------------------------------------------


def test_anymail_recipients_refused_fills_recipients_from_anymail_status() -> None:
    message = EmailMessage("Hi", "Body", "app@example.com", [A, B])
    status = AnymailStatus()
    status.set_recipient_status(
        {A: AnymailRecipientStatus(None, "rejected"), B: AnymailRecipientStatus(None, "invalid")}
    )
    message.anymail_status = status  # type: ignore[attr-defined]
    response = http_response(422, {"ErrorCode": 406, "Message": "Inactive recipient"})
    error = AnymailRecipientsRefused(email_message=message, response=response)
    result = classify(failing(error, (A, B)))
    assert result.verdict is FAILED
    assert result.recipients == (
        RecipientResult(address=A, state=R_FAILED, detail="ESP status: rejected"),
        RecipientResult(address=B, state=R_FAILED, detail="ESP status: invalid"),
    )
    assert result.code == 422


def test_anymail_recipients_refused_without_status_fails_every_recipient() -> None:
    result = classify(failing(AnymailRecipientsRefused(), (A, B)))
    assert states(result) == {A: R_FAILED, B: R_FAILED}


# --- Calls that returned ----------------------------------------------------------------------


def test_plain_success_sends_to_every_recipient() -> None:
    result = classify(DeliveryResult(recipients=(A, B), sent_count=1))
    assert result.verdict is SENT
    assert states(result) == {A: R_SENT, B: R_SENT}


def test_smtp_success_with_empty_refusals_is_sent() -> None:
    result = classify(DeliveryResult(recipients=(A,), refused={}))
    assert result.verdict is SENT


def test_partial_refusal_is_sent_with_the_refused_recipient_failed() -> None:
    result = classify(DeliveryResult(recipients=(A, B), refused={B: (550, "5.1.1 user unknown")}))
    assert result.verdict is SENT
    assert result.recipients == (
        RecipientResult(address=A, state=R_SENT),
        RecipientResult(address=B, state=R_FAILED, code=550, detail="550 5.1.1 user unknown"),
    )
    assert (result.code, result.enhanced_code) == (550, "5.1.1")


def test_partial_refusal_with_a_deferral_retries_just_that_recipient() -> None:
    refusals: Any = {B: (450, b"4.2.1 try later"), C: (550, b"5.1.1 unknown")}
    result = classify(DeliveryResult(recipients=(A, B, C), refused=refusals))
    assert result.verdict is RETRY_RECIPIENTS
    assert states(result) == {A: R_SENT, B: R_RETRY, C: R_FAILED}
    assert result.recipients_to_retry == (B,)


def test_partial_refusal_with_421_means_backend_down_and_still_records_accepted() -> None:
    result = classify(DeliveryResult(recipients=(A, B), refused={B: (421, "4.7.0 closing")}))
    assert result.verdict is DOWN
    assert states(result) == {A: R_SENT, B: R_RETRY}


@pytest.mark.parametrize(
    ("esp_status", "verdict", "expected"),
    [
        ({A: "sent", B: "queued"}, SENT, {A: R_SENT, B: R_SENT}),
        ({A: "queued", B: "rejected"}, SENT, {A: R_SENT, B: R_FAILED}),
        ({A: "sent", B: "failed"}, RETRY_RECIPIENTS, {A: R_SENT, B: R_RETRY}),
        ({A: "invalid", B: "unknown"}, RETRY_RECIPIENTS, {A: R_FAILED, B: R_RETRY}),
        ({A: "invalid", B: "rejected"}, FAILED, {A: R_FAILED, B: R_FAILED}),
        ({A: "failed", B: "unknown"}, RETRY, {A: R_RETRY, B: R_RETRY}),
        ({A: "sent", B: "bogus"}, RETRY_RECIPIENTS, {A: R_SENT, B: R_RETRY}),
        ({A.upper(): "rejected", B: "sent"}, SENT, {A: R_FAILED, B: R_SENT}),
        ({A: "sent"}, SENT, {A: R_SENT, B: R_SENT}),
    ],
    ids=[
        "sent and queued: sent",
        "some rejected: sent, the rejected one failed",
        "some failed: retry just those",
        "invalid and unknown: fail one, retry the other",
        "every recipient invalid or rejected: failed",
        "every recipient failed or unknown: retry the message",
        "an unknown status is retried",
        "addresses match case-insensitively",
        "a recipient the ESP did not mention was not refused",
    ],
)
def test_esp_status(
    esp_status: dict[str, str], verdict: Verdict, expected: dict[str, RecipientState]
) -> None:
    result = classify(DeliveryResult(recipients=(A, B), sent_count=1, esp_status=esp_status))
    assert result.verdict is verdict
    assert states(result) == expected


@pytest.mark.parametrize("recipients", [(A, B), ()], ids=["with recipients", "no recipients"])
def test_nothing_sent_without_an_error_fails_rather_than_retrying_forever(
    recipients: tuple[str, ...],
) -> None:
    result = classify(DeliveryResult(recipients=recipients, sent_count=0))
    assert result.verdict is FAILED
    assert result.reason == "nothing was sent: the backend reported 0 messages sent"
    assert all(r.state is R_FAILED for r in result.recipients)


def test_nothing_sent_wins_over_a_stale_esp_status() -> None:
    result = classify(DeliveryResult(recipients=(A,), sent_count=0, esp_status={A: "sent"}))
    assert result.verdict is FAILED


# --- User rules -----------------------------------------------------------------------------


def test_user_rule_returning_a_verdict_is_tried_before_the_table() -> None:
    error = smtplib.SMTPSenderRefused(550, b"5.7.1 sender rejected", "app@example.com")
    result = classify(failing(error), rules=[lambda exc: MISCONFIGURED])
    assert result.verdict is MISCONFIGURED
    assert result.reason == describe(error)
    assert (result.code, result.enhanced_code) == (550, "5.7.1")


def test_user_rule_returning_a_classification_is_used_as_it_is() -> None:
    mine = Classification(verdict=FAILED, reason="ours", code=599)
    assert classify(failing(RuntimeError("x")), rules=[lambda exc: mine]) is mine


def test_user_rule_returning_none_passes_to_the_next_rule_then_the_table() -> None:
    seen: list[str] = []

    def not_mine(exc: BaseException) -> None:
        seen.append("first")

    def mine_for_runtime(exc: BaseException) -> Verdict | None:
        seen.append("second")
        return RETRY if isinstance(exc, RuntimeError) else None

    assert classify(failing(TimeoutError()), rules=[not_mine, mine_for_runtime]).verdict is DOWN
    assert seen == ["first", "second"]


def test_user_rule_that_raises_is_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    def broken(exc: BaseException) -> Verdict:
        raise KeyError("bug in the user's rule")

    with caplog.at_level(logging.WARNING, logger="mailroom.classification"):
        result = classify(failing(TimeoutError()), rules=[broken, lambda exc: FAILED])
    assert result.verdict is FAILED
    assert "raised; ignoring it" in caplog.text


def test_user_rule_returning_something_else_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    returns_a_string: Any = lambda exc: "failed"  # noqa: E731
    with caplog.at_level(logging.WARNING, logger="mailroom.classification"):
        result = classify(failing(TimeoutError()), rules=[returns_a_string])
    assert result.verdict is DOWN
    assert "returned str" in caplog.text


def test_user_rules_are_not_consulted_for_a_call_that_returned() -> None:
    def explode(exc: BaseException) -> None:
        raise AssertionError("must not be called")

    assert classify(DeliveryResult(recipients=(A,), sent_count=1), rules=[explode]).verdict is SENT


# --- The unknown, and never raising ---------------------------------------------------------


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise AttributeError("'NoneType' object has no attribute 'reason'")


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("boom"),
        KeyError("x"),
        ValueError("math domain error"),
        OSError("something local"),
        smtplib.SMTPException("something new"),
        smtplib.SMTPResponseException(-1, b"unparseable"),
        AnymailAPIError("KeyError parsing Amazon SES send result"),
        client_error("SomethingNew", "?", 409),
    ],
    ids=[
        "RuntimeError",
        "KeyError",
        "ValueError not about an address",
        "OSError without a network errno",
        "unknown SMTPException",
        "SMTP reply code -1",
        "AnymailAPIError without a status",
        "unlisted AWS 409",
    ],
)
def test_unknown_error_is_retried_and_flagged_unexpected(error: BaseException) -> None:
    result = classify(failing(error))
    assert result.verdict is RETRY
    assert result.unexpected
    assert result.reason == f"unexpected {describe(error)}"
    assert find_row(error) is None


def test_unknown_error_whose_str_raises_is_still_classified() -> None:
    result = classify(failing(UnprintableError()))
    assert (result.verdict, result.unexpected, result.reason) == (
        RETRY,
        True,
        "unexpected UnprintableError",
    )


def test_recipients_refused_with_no_replies_is_unexpected_not_a_crash() -> None:
    result = classify(failing(smtplib.SMTPRecipientsRefused({})))
    assert result.unexpected


def test_malformed_refusal_dict_is_unexpected_not_a_crash() -> None:
    result = classify(DeliveryResult(recipients=(A,), refused={A: "550"}))  # type: ignore[dict-item]
    assert (result.verdict, result.unexpected) == (RETRY, True)


def test_describe_is_type_and_text_on_one_line() -> None:
    assert describe(ValueError("bad\n  address")) == "ValueError: bad address"


def test_describe_is_just_the_type_name_when_the_text_is_empty() -> None:
    assert describe(TimeoutError()) == "TimeoutError"


def test_describe_survives_a_str_that_raises() -> None:
    assert describe(UnprintableError()) == "UnprintableError"


def test_describe_survives_anymail_api_error_with_status_but_no_response() -> None:
    error = AnymailAPIError("simulated", status_code=503)
    with pytest.raises(AttributeError):
        str(error)
    assert describe(error) == "AnymailAPIError"


def test_describe_keeps_anymail_response_details_on_one_line() -> None:
    text = describe(esp_error(500, {"message": "down"}, esp_name="Mailgun"))
    assert text.startswith("AnymailRequestsAPIError: Mailgun API response 500")
    assert "\n" not in text
