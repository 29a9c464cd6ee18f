"""Delivery through django-anymail's real Postmark and SparkPost backends, pointed (through
OPTIONS) at a local fake ESP that answers 200, 422, 429, 500 and drops connections."""

from __future__ import annotations

import base64
import random
from datetime import timedelta

import pytest
from django.core.mail import EmailMessage

import mailroom
from mailroom.models import Attempt, BackendState, Message, Status
from mailroom.operations import resume_backends
from tests.support.fake_esp import postmark_inactive_recipients, postmark_invalid_address

pytestmark = pytest.mark.django_db

ESPS = {
    "postmark": {"BACKEND": "anymail.backends.postmark.EmailBackend", "key": "server_token"},
    "sparkpost": {"BACKEND": "anymail.backends.sparkpost.EmailBackend", "key": "api_key"},
}


@pytest.fixture(params=sorted(ESPS))
def esp(request, fake_esp, mailroom_settings):
    conf = ESPS[request.param]
    mailroom_settings(
        BACKENDS={
            "default": {
                "BACKEND": conf["BACKEND"],
                "OPTIONS": {conf["key"]: "test-key", "api_url": fake_esp.url, "timeout": 3},
            }
        }
    )
    return request.param


@pytest.fixture
def postmark(fake_esp, mailroom_settings):
    mailroom_settings(
        BACKENDS={
            "default": {
                "BACKEND": "anymail.backends.postmark.EmailBackend",
                "OPTIONS": {"server_token": "t", "api_url": fake_esp.url, "timeout": 3},
            }
        }
    )


def queue(*recipients: str, subject: str = "S") -> Message:
    return mailroom.enqueue(EmailMessage(subject, "B", "app@example.com", list(recipients)))


def test_accepted_message_is_sent_with_the_providers_id(esp, fake_esp, run_send) -> None:
    row = queue("ok@example.com")
    run_send()
    row.refresh_from_db()
    assert row.status == Status.SENT
    assert len(fake_esp.accepted) == 1
    attempt = Attempt.objects.get(message=row)
    assert attempt.esp_message_id
    assert row.content.mime is None, "no MIME rendering at enqueue for an HTTP API backend"


def test_server_error_pauses_the_backend_without_charging(esp, fake_esp, run_send) -> None:
    first, second = queue("a@example.com"), queue("b@example.com")
    fake_esp.respond_once(500, {"errors": [{"message": "internal"}]})
    run_send()
    for row in (first, second):
        row.refresh_from_db()
        assert (row.status, row.attempts) == (Status.QUEUED, 0)
    assert BackendState.objects.get(alias="default").verdict == "backend_down"
    resume_backends()
    run_send()
    assert Message.objects.filter(status=Status.SENT).count() == 2


def test_dropped_connection_is_backend_down(esp, fake_esp, run_send) -> None:
    row = queue("a@example.com")
    fake_esp.respond_once(drop=True)
    run_send()
    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.QUEUED, 0)
    assert BackendState.objects.get(alias="default").verdict == "backend_down"


def test_429_honours_retry_after(postmark, fake_esp, run_send) -> None:
    queue("a@example.com")
    fake_esp.respond_once(
        429, {"ErrorCode": 429, "Message": "Rate limit exceeded"}, {"Retry-After": "7"}
    )
    run_send()
    state = BackendState.objects.get(alias="default")
    assert state.verdict == "backend_down"
    pause = state.paused_until - state.updated_at
    assert timedelta(seconds=6) < pause < timedelta(seconds=8)


def test_invalid_recipient_422_fails_the_message(postmark, fake_esp, run_send) -> None:
    row = queue("bad@example.com")
    fake_esp.respond_once(422, postmark_invalid_address("bad@example.com"))
    run_send()
    row.refresh_from_db()
    assert row.status == Status.FAILED
    assert row.reason


def test_inactive_recipient_422_fails_the_message_and_the_next_is_sent(
    postmark, fake_esp, run_send
) -> None:
    bad = queue("suppressed@example.com")
    good = queue("ok@example.com")
    fake_esp.for_recipient(
        "suppressed@example.com", 422, postmark_inactive_recipients("suppressed@example.com")
    )
    run_send()
    bad.refresh_from_db()
    good.refresh_from_db()
    assert (bad.status, good.status) == (Status.FAILED, Status.SENT)


def test_account_problem_422_is_a_misconfiguration(postmark, fake_esp, run_send) -> None:
    row = queue("a@example.com")
    fake_esp.respond_once(422, {"ErrorCode": 412, "Message": "Account is pending approval"})
    run_send()
    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.QUEUED, 0)
    assert BackendState.objects.get(alias="default").verdict == "backend_misconfigured"


def test_wrong_api_key_401_is_a_misconfiguration(postmark, fake_esp, run_send) -> None:
    queue("a@example.com")
    fake_esp.respond_once(401, {"ErrorCode": 10, "Message": "Bad or missing API token"})
    run_send()
    assert BackendState.objects.get(alias="default").verdict == "backend_misconfigured"


def test_esp_down_then_back(esp, fake_esp, run_send) -> None:
    rows = [queue(f"r{i}@example.com") for i in range(3)]
    fake_esp.stop()
    run_send()
    assert all(Message.objects.get(pk=r.pk).attempts == 0 for r in rows)
    fake_esp.start()
    resume_backends()
    run_send()
    assert Message.objects.filter(status=Status.SENT).count() == 3


def test_retry_for_some_recipients_sends_only_to_them(postmark, fake_esp, run_send) -> None:
    row = queue("a@example.com", "b@example.com")
    Message.objects.filter(pk=row.pk).update(pending_recipients=["b@example.com"])
    run_send()
    [request] = fake_esp.requests
    assert list(request.recipients) == ["b@example.com"]


def test_messages_with_big_payloads_are_read_one_at_a_time_and_arrive_whole(
    postmark, fake_esp, run_send, monkeypatch
) -> None:
    from mailroom import loading

    monkeypatch.setattr(loading, "INLINE_PAYLOAD", 2000)
    # Like attachments, base64 of random bytes: it does not compress in PostgreSQL either.
    noise = base64.b64encode(random.Random(2).randbytes(9000)).decode()
    bodies = {"Big": noise[:5000], "Small": "B", "Bigger": noise}
    for subject, body in bodies.items():
        mailroom.enqueue(EmailMessage(subject, body, "app@example.com", ["a@example.com"]))
    run_send()
    assert Message.objects.filter(status=Status.SENT).count() == 3
    received = {m.payload["Subject"]: m.payload["TextBody"] for m in fake_esp.accepted}
    assert received == bodies
