"""A queue of 1,000 messages with 50 poison ones mixed in: one ``mailroom send`` delivers all
950 good ones, keeps every poison one with its reason, and deletes nothing."""

from __future__ import annotations

import pytest
from django.core.mail import EmailMessage

import mailroom
from mailroom.models import Message, MessageContent, Status
from tests.conftest import SMTP_BACKEND, smtp_options
from tests.support import thirdparty_backend

pytestmark = pytest.mark.django_db

REFUSED, VENDOR_ERROR, UNDECODABLE, CONTENT_REJECTED = range(4)


def test_fifty_poison_messages_do_not_hold_back_950_good_ones(
    smtp_server, mailroom_settings, run_send
) -> None:
    thirdparty_backend.outbox.clear()
    mailroom_settings(
        BACKENDS={
            "default": {"BACKEND": SMTP_BACKEND, "OPTIONS": smtp_options(smtp_server)},
            "vendor": {"BACKEND": "tests.support.thirdparty_backend.EmailBackend"},
        }
    )
    smtp_server.script.rcpt["gone@example.com"] = "550 5.1.1 No such user"
    smtp_server.script.data_fail_times(
        "554 5.7.1 Content rejected", times=10**6, subject_contains="rejected-content"
    )

    poison_kind: dict[int, int] = {}
    for i in range(1000):
        kind = (i // 20) % 4 if i % 20 == 0 else None
        to = "gone@example.com" if kind == REFUSED else f"user{i}@example.com"
        subject = {VENDOR_ERROR: "boom", CONTENT_REJECTED: "rejected-content"}.get(kind, f"S{i}")
        backend = "vendor" if kind == VENDOR_ERROR or (kind is None and i % 10 == 1) else "default"
        row = mailroom.enqueue(EmailMessage(subject, "B", "app@example.com", [to]), backend=backend)
        if kind is not None:
            poison_kind[row.pk] = kind
    # A stored row that no longer decodes (a bad migration, a hand edit): only its own problem.
    undecodable = [pk for pk, kind in poison_kind.items() if kind == UNDECODABLE]
    MessageContent.objects.filter(pk__in=undecodable).update(payload={"v": 99}, mime=None)
    assert len(poison_kind) == 50

    run_send()

    good = Message.objects.exclude(pk__in=poison_kind)
    assert good.filter(status=Status.SENT).count() == 950
    assert smtp_server.count + len(thirdparty_backend.outbox) == 950
    assert Message.objects.count() == 1000, "the engine deletes nothing"
    for row in Message.objects.filter(pk__in=poison_kind):
        assert row.reason, f"poison message {row.pk} has no reason"
        expected = Status.QUEUED if poison_kind[row.pk] == VENDOR_ERROR else Status.FAILED
        assert row.status == expected, (row.pk, poison_kind[row.pk], row.reason)
    assert not Message.objects.filter(status=Status.FAILED, reason="").exists()
