"""The seed report (django-mailer #73): one unexpected exception from a non-SMTP backend must
never stall the queue, and the message that raised it must be kept, with its reason."""

from __future__ import annotations

import logging

import pytest
from django.core.mail import EmailMessage

import mailroom
from mailroom.models import Attempt, Message, Status
from tests.support import thirdparty_backend

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _vendor_backend(mailroom_settings):
    thirdparty_backend.outbox.clear()
    mailroom_settings(
        BACKENDS={"default": {"BACKEND": "tests.support.thirdparty_backend.EmailBackend"}}
    )


def test_one_vendor_exception_in_a_batch_of_100_stalls_nothing(run_send, caplog) -> None:
    rows = [
        mailroom.enqueue(
            EmailMessage("boom" if i == 42 else f"S{i}", "B", "a@example.com", [f"t{i}@x.org"])
        )
        for i in range(100)
    ]
    with caplog.at_level(logging.ERROR, logger="mailroom"):
        run_send()

    # 99 delivered in that same run...
    assert len(thirdparty_backend.outbox) == 99
    assert Message.objects.filter(status=Status.SENT).count() == 99
    # ...and the one that raised is kept, with its reason, to be retried within its budget.
    poison = Message.objects.get(pk=rows[42].pk)
    assert poison.status == Status.QUEUED
    assert poison.attempts == 1
    assert "VendorAPIException" in poison.reason
    assert "1902" in poison.reason
    attempt = Attempt.objects.get(message=poison)
    assert attempt.error_type == "tests.support.thirdparty_backend.VendorAPIException"
    assert "Code: 1902" in attempt.error_text
    # An operator must hear about an exception nobody classified.
    assert any(
        "unexpected" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records
    )


def test_the_unknown_exception_is_retried_within_a_bounded_budget(
    mailroom_settings, run_send
) -> None:
    mailroom_settings(
        MAX_ATTEMPTS=3,
        BACKENDS={"default": {"BACKEND": "tests.support.thirdparty_backend.EmailBackend"}},
    )
    row = mailroom.enqueue(EmailMessage("boom", "B", "a@example.com", ["t@x.org"]))
    from mailroom.operations import retry_deferred

    for _ in range(5):
        retry_deferred()
        run_send()
    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.FAILED, 3)
    assert "gave up after 3 attempts" in row.reason
    assert Message.objects.filter(pk=row.pk).exists(), "nothing is ever deleted"


def test_a_user_rule_classifies_the_vendor_exception(mailroom_settings, run_send) -> None:
    mailroom_settings(
        CLASSIFIERS=["tests.support.rules.vendor_rejections_are_permanent"],
        BACKENDS={"default": {"BACKEND": "tests.support.thirdparty_backend.EmailBackend"}},
    )
    row = mailroom.enqueue(EmailMessage("boom", "B", "a@example.com", ["t@x.org"]))
    run_send()
    row.refresh_from_db()
    assert row.status == Status.FAILED
    assert row.reason == "vendor rejected the message (code 1902)"
