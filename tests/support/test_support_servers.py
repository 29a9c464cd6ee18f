"""Self-tests for the test servers: each one behaves exactly as scripted.

The clients are real ones: smtplib for the SMTP server, requests and django-anymail's Postmark and
SparkPost backends for the fake ESP. If these pass, a failing mailroom test is mailroom's fault.
"""

from __future__ import annotations

import json
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from anymail.backends.postmark import EmailBackend as PostmarkBackend
from anymail.backends.sparkpost import EmailBackend as SparkPostBackend
from anymail.exceptions import AnymailRecipientsRefused, AnymailRequestsAPIError
from django.core.mail import EmailMessage

from mailroom.smtp_transaction import sendmail
from tests.support.fake_esp import (
    FakeESPServer,
    postmark_inactive_recipients,
    postmark_invalid_address,
)
from tests.support.smtp_server import Received, ScriptedSMTPServer

SENDER = "app@example.com"


def raw_message(message_id: str = "<m1@mailroom.test>", subject: str = "Hello") -> bytes:
    return (
        f"From: {SENDER}\r\nTo: a@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: {message_id}\r\n\r\nBody\r\n"
    ).encode()


def connect(server: ScriptedSMTPServer) -> smtplib.SMTP:
    return smtplib.SMTP(server.host, server.port, timeout=5)


# -- SMTP ---------------------------------------------------------------------------------------


def test_smtp_accepts_and_records_messages(smtp_server: ScriptedSMTPServer) -> None:
    with connect(smtp_server) as client:
        refused = client.sendmail(SENDER, ["a@example.com", "b@example.com"], raw_message())

    assert refused == {}
    [received] = smtp_server.messages
    assert received == Received(
        mail_from=SENDER,
        rcpt_tos=("a@example.com", "b@example.com"),
        data=received.data,
        message_id="<m1@mailroom.test>",
        subject="Hello",
    )
    assert b"Body" in received.data
    assert smtp_server.count == 1
    assert smtp_server.message_ids() == ["<m1@mailroom.test>"]
    assert smtp_server.recipients_of("<m1@mailroom.test>") == ["a@example.com", "b@example.com"]
    assert smtp_server.connections == 1


@pytest.mark.parametrize(
    "reply", ["451 4.7.1 Greylisted, try again later", "550 5.1.1 No such user"]
)
def test_smtp_partial_refusal_is_reported_per_recipient(
    smtp_server: ScriptedSMTPServer, reply: str
) -> None:
    smtp_server.script.rcpt["bad@example.com"] = reply
    with connect(smtp_server) as client:
        refused = client.sendmail(SENDER, ["good@example.com", "bad@example.com"], raw_message())

    code, text = reply.split(" ", 1)
    assert refused == {"bad@example.com": (int(code), text.encode())}
    assert smtp_server.messages[0].rcpt_tos == ("good@example.com",)


def test_smtp_all_recipients_refused_raises(smtp_server: ScriptedSMTPServer) -> None:
    smtp_server.script.rcpt["bad@example.com"] = "550 5.1.1 No such user"
    with connect(smtp_server) as client, pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
        client.sendmail(SENDER, ["bad@example.com"], raw_message())

    assert caught.value.recipients == {"bad@example.com": (550, b"5.1.1 No such user")}
    assert smtp_server.count == 0


def test_smtp_greylist_once_then_accept(smtp_server: ScriptedSMTPServer) -> None:
    smtp_server.script.rcpt_fail_times("grey@example.com", "451 4.7.1 Greylisted", times=1)
    with connect(smtp_server) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail(SENDER, ["grey@example.com"], raw_message())
        assert client.sendmail(SENDER, ["grey@example.com"], raw_message()) == {}

    assert smtp_server.count == 1


def test_smtp_rcpt_rule_sees_the_attempt_number(smtp_server: ScriptedSMTPServer) -> None:
    smtp_server.script.rcpt["slow@example.com"] = lambda _address, attempt: (
        "451 4.3.0 Try later" if attempt < 3 else None
    )
    outcomes = []
    with connect(smtp_server) as client:
        for _ in range(3):
            try:
                outcomes.append(client.sendmail(SENDER, ["slow@example.com"], raw_message()))
            except smtplib.SMTPRecipientsRefused:
                outcomes.append("refused")

    assert outcomes == ["refused", "refused", {}]


def test_smtp_mail_from_reply(smtp_server: ScriptedSMTPServer) -> None:
    smtp_server.script.mail_from = "421 4.3.2 Shutting down"
    with connect(smtp_server) as client, pytest.raises(smtplib.SMTPSenderRefused) as caught:
        client.sendmail(SENDER, ["a@example.com"], raw_message())

    assert caught.value.smtp_code == 421


def test_smtp_data_reply_by_subject(smtp_server: ScriptedSMTPServer) -> None:
    smtp_server.script.data = lambda message, _attempt: (
        "554 5.7.1 Looks like spam" if "SPAM" in (message.subject or "") else None
    )
    with connect(smtp_server) as client:
        with pytest.raises(smtplib.SMTPDataError) as caught:
            client.sendmail(SENDER, ["a@example.com"], raw_message("<s@x>", subject="SPAM here"))
        client.sendmail(SENDER, ["a@example.com"], raw_message("<h@x>", subject="ham"))

    assert caught.value.smtp_code == 554
    assert smtp_server.message_ids() == ["<h@x>"]


def test_smtp_data_fails_n_times_then_accepts(smtp_server: ScriptedSMTPServer) -> None:
    smtp_server.script.data_fail_times("451 4.3.0 Queue full", times=2)
    codes = []
    with connect(smtp_server) as client:
        for _ in range(3):
            try:
                client.sendmail(SENDER, ["a@example.com"], raw_message())
                codes.append(250)
            except smtplib.SMTPDataError as error:
                codes.append(error.smtp_code)

    assert codes == [451, 451, 250]


def test_smtp_drop_connection_mid_batch(smtp_server: ScriptedSMTPServer) -> None:
    smtp_server.script.drop_connection_after(1)
    with connect(smtp_server) as client:
        client.sendmail(SENDER, ["a@example.com"], raw_message("<1@x>"))
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.sendmail(SENDER, ["a@example.com"], raw_message("<2@x>"))

    assert smtp_server.message_ids() == ["<1@x>"]
    with connect(smtp_server) as client:  # one-shot: the next connection works
        client.sendmail(SENDER, ["a@example.com"], raw_message("<2@x>"))
    assert smtp_server.message_ids() == ["<1@x>", "<2@x>"]


def test_smtp_drop_after_accepting_records_the_message(smtp_server: ScriptedSMTPServer) -> None:
    smtp_server.script.drop_next_data(after_accepting=True)
    with connect(smtp_server) as client, pytest.raises(smtplib.SMTPServerDisconnected):
        client.sendmail(SENDER, ["a@example.com"], raw_message())

    assert smtp_server.message_ids() == ["<m1@mailroom.test>"]


@pytest.mark.parametrize("greeting", ["421 4.3.2 Service not available", "554 No service"])
def test_smtp_greeting_refusal(smtp_server: ScriptedSMTPServer, greeting: str) -> None:
    smtp_server.script.greeting = greeting
    with pytest.raises(smtplib.SMTPConnectError) as caught:
        connect(smtp_server)

    assert caught.value.smtp_code == int(greeting[:3])
    assert smtp_server.connections == 1


def test_smtp_auth_required() -> None:
    with ScriptedSMTPServer(auth=("user", "secret")) as server:
        with connect(server) as client, pytest.raises(smtplib.SMTPSenderRefused) as caught:
            client.sendmail(SENDER, ["a@example.com"], raw_message())
        assert caught.value.smtp_code == 530

        with connect(server) as client, pytest.raises(smtplib.SMTPAuthenticationError) as bad:
            client.login("user", "wrong")
        assert bad.value.smtp_code == 535

        with connect(server) as client:
            client.login("user", "secret")
            client.sendmail(SENDER, ["a@example.com"], raw_message())
        assert server.count == 1


@pytest.mark.parametrize(
    "reply", ["535 5.7.8 Authentication credentials invalid", "454 4.7.0 Try again later"]
)
def test_smtp_auth_reply_override(smtp_server: ScriptedSMTPServer, reply: str) -> None:
    smtp_server.script.auth_reply = reply
    with connect(smtp_server) as client, pytest.raises(smtplib.SMTPAuthenticationError) as caught:
        client.login("user", "anything")

    assert caught.value.smtp_code == int(reply[:3])


def test_smtp_data_delay(smtp_server: ScriptedSMTPServer) -> None:
    smtp_server.script.data_delay = 0.2
    with connect(smtp_server) as client:
        started = time.monotonic()
        client.sendmail(SENDER, ["a@example.com"], raw_message())

    assert time.monotonic() - started >= 0.2


def test_smtp_stop_and_start_on_the_same_port(smtp_server: ScriptedSMTPServer) -> None:
    client = connect(smtp_server)
    client.sendmail(SENDER, ["a@example.com"], raw_message("<1@x>"))
    smtp_server.stop()

    with pytest.raises(smtplib.SMTPServerDisconnected):  # open sessions end with the server
        client.sendmail(SENDER, ["a@example.com"], raw_message("<2@x>"))
    with pytest.raises(ConnectionRefusedError):
        connect(smtp_server)

    smtp_server.start()
    with connect(smtp_server) as client:
        client.sendmail(SENDER, ["a@example.com"], raw_message("<3@x>"))
    assert smtp_server.message_ids() == ["<1@x>", "<3@x>"]


def test_smtp_count_only_mode() -> None:
    with ScriptedSMTPServer(keep_data=False) as server, connect(server) as client:
        for n in range(3):
            client.sendmail(SENDER, ["a@example.com", "b@example.com"], raw_message(f"<{n}@x>"))
        client.sendmail(SENDER, ["a@example.com"], raw_message("<0@x>"))

    assert server.count == 4
    assert server.recipient_count == 7
    assert server.duplicate_message_ids() == {"<0@x>": 2}
    with pytest.raises(RuntimeError):
        server.messages  # noqa: B018


def test_counting_finds_the_message_id_the_full_parse_finds() -> None:
    """The count-only sink reads Message-ID with a regular expression, not the email
    package: on what Django renders, and on headers written otherwise, both must agree."""
    django_message = EmailMessage("Subject", "Body", SENDER, ["a@example.com"]).message()
    payloads = [
        django_message.as_bytes().replace(b"\n", b"\r\n"),
        raw_message("<spaced@x>").replace(b"Message-ID: ", b"message-id:\t  "),
        raw_message("<last@x>").replace(b"\r\n\r\nBody", b"\r\nX-After: 1\r\n\r\nBody"),
        b"From: a@example.com\r\nSubject: no id\r\n\r\nMessage-ID: <in-body@x>\r\n",
    ]
    found = {}
    for keep_data in (True, False):
        with ScriptedSMTPServer(keep_data=keep_data) as server, connect(server) as client:
            for data in payloads:
                client.sendmail(SENDER, ["a@example.com"], data)
        found[keep_data] = server.message_ids()
    assert found[False] == found[True]
    assert len(found[True]) == 3, "the Message-ID in the body is not a header"


def test_smtp_server_runs_as_a_process() -> None:
    script = Path(__file__).with_name("smtp_server.py")
    command = [sys.executable, str(script), "--count-only", "--pipelining"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        try:
            port = int(process.stdout.readline())
            with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
                client.sendmail(SENDER, ["a@example.com"], raw_message("<one@x>"))
                assert client.has_extn("pipelining")
                # One transaction pipelined (RFC 2920), as mailroom sends to such a server.
                sendmail(
                    client,
                    SENDER,
                    ["a@example.com"],
                    raw_message("<two@x>"),
                    before_commit=lambda: None,
                )
            process.send_signal(signal.SIGTERM)
            stats = json.loads(process.stdout.readline())
            assert process.wait(5) == 0
        finally:
            process.kill()  # a no-op once it has exited

    assert stats == {
        "messages": 2,
        "recipients": 2,
        "unique_message_ids": 2,
        "duplicates": 0,
        "connections": 1,
        "pipelined": 1,
        "chained": 0,
    }


# -- fake ESP -----------------------------------------------------------------------------------


def email(to: tuple[str, ...] = ("to@example.com",)) -> EmailMessage:
    return EmailMessage("Hello", "Body", SENDER, list(to))


def postmark(server: FakeESPServer) -> PostmarkBackend:
    return PostmarkBackend(server_token="t", api_url=server.url, timeout=5)


def test_postmark_success(fake_esp: FakeESPServer) -> None:
    message = email()
    assert postmark(fake_esp).send_messages([message]) == 1

    assert message.anymail_status.status == {"sent"}
    [accepted] = fake_esp.accepted
    assert message.anymail_status.message_id == accepted.message_id
    assert accepted.recipients == ("to@example.com",)
    [request] = fake_esp.requests
    assert request.path == "/email"
    assert request.headers["X-Postmark-Server-Token"] == "t"
    assert request.json["Subject"] == "Hello"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (postmark_invalid_address("to@example.com"), {"invalid"}),
        (postmark_inactive_recipients("to@example.com"), {"rejected"}),
    ],
)
def test_postmark_422_recipient_errors(
    fake_esp: FakeESPServer, body: dict[str, object], status: set[str]
) -> None:
    fake_esp.respond_once(422, body)
    message = email()
    with pytest.raises(AnymailRecipientsRefused):
        postmark(fake_esp).send_messages([message])

    assert message.anymail_status.status == status
    assert fake_esp.accepted == []


def test_postmark_429_carries_retry_after(fake_esp: FakeESPServer) -> None:
    fake_esp.respond_once(429, {"ErrorCode": 429, "Message": "Rate limit"}, {"Retry-After": "7"})
    with pytest.raises(AnymailRequestsAPIError) as caught:
        postmark(fake_esp).send_messages([email()])

    assert caught.value.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "7"


def test_postmark_500_then_the_queue_of_responses_is_used_up(fake_esp: FakeESPServer) -> None:
    fake_esp.respond_once(500)
    with pytest.raises(AnymailRequestsAPIError) as caught:
        postmark(fake_esp).send_messages([email()])
    assert caught.value.status_code == 500

    assert postmark(fake_esp).send_messages([email()]) == 1


def test_postmark_dropped_connection(fake_esp: FakeESPServer) -> None:
    fake_esp.respond_once(drop=True)
    with pytest.raises(AnymailRequestsAPIError) as caught:
        postmark(fake_esp).send_messages([email()])

    assert isinstance(caught.value, requests.ConnectionError)
    assert caught.value.status_code is None
    assert len(fake_esp.requests) == 1


def test_per_recipient_rule_only_hits_that_recipient(fake_esp: FakeESPServer) -> None:
    fake_esp.for_recipient("Bad@example.com", 503, times=1)
    assert postmark(fake_esp).send_messages([email(("good@example.com",))]) == 1
    with pytest.raises(AnymailRequestsAPIError):
        postmark(fake_esp).send_messages([email(("bad@example.com",))])
    assert postmark(fake_esp).send_messages([email(("bad@example.com",))]) == 1


def test_always_and_reset(fake_esp: FakeESPServer) -> None:
    fake_esp.always(503)
    for _ in range(2):
        assert requests.post(fake_esp.url + "email", json={}, timeout=5).status_code == 503
    fake_esp.reset()
    assert requests.post(fake_esp.url + "email", json={}, timeout=5).status_code == 200


def test_sparkpost_success(fake_esp: FakeESPServer) -> None:
    message = email(("a@example.com", "b@example.com"))
    backend = SparkPostBackend(api_key="k", api_url=fake_esp.url, timeout=5)
    assert backend.send_messages([message]) == 1

    assert message.anymail_status.status == {"queued"}
    [accepted] = fake_esp.accepted
    assert message.anymail_status.message_id == accepted.message_id
    assert accepted.api == "sparkpost"
    assert accepted.recipients == ("a@example.com", "b@example.com")
    assert fake_esp.requests[0].path == "/transmissions/"


def test_esp_stop_and_start_on_the_same_url(fake_esp: FakeESPServer) -> None:
    fake_esp.stop()
    with pytest.raises(AnymailRequestsAPIError) as caught:
        postmark(fake_esp).send_messages([email()])
    assert isinstance(caught.value, requests.ConnectionError)

    fake_esp.start()
    assert postmark(fake_esp).send_messages([email()]) == 1
