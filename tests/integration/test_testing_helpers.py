"""mailroom.testing.deliver_queued: the queue, delivered into django.core.mail.outbox."""

from __future__ import annotations

import pytest
from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.utils import timezone

import mailroom
from mailroom.models import Message, Status
from mailroom.testing import deliver_queued

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _esp_configured(mailroom_settings):
    # A real ESP backend is configured; deliver_queued must not call it.
    mailroom_settings(
        BACKENDS={
            "default": {
                "BACKEND": "anymail.backends.postmark.EmailBackend",
                "OPTIONS": {"server_token": "t", "api_url": "http://127.0.0.1:9/"},
            },
            "bulk": {
                "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                "OPTIONS": {"host": "127.0.0.1", "port": 9},
            },
        }
    )


def test_queued_mail_lands_in_the_outbox_as_rebuilt_from_the_queue() -> None:
    message = EmailMultiAlternatives("Hi", "text", "a@example.com", ["t@example.com"])
    message.attach_alternative("<p>html</p>", "text/html")
    row = mailroom.enqueue(message)
    mailroom.enqueue(EmailMessage("Bulk", "B", "a@example.com", ["b@example.com"]), backend="bulk")
    assert mail.outbox == []

    stats = deliver_queued()

    assert stats.sent == 2
    assert sorted(m.subject for m in mail.outbox) == ["Bulk", "Hi"]
    hi = next(m for m in mail.outbox if m.subject == "Hi")
    assert hi.alternatives[0][0] == "<p>html</p>"
    assert hi.extra_headers["Message-ID"] == row.message_id
    assert Message.objects.filter(status=Status.SENT).count() == 2


def test_mail_scheduled_for_later_stays_queued() -> None:
    mailroom.enqueue(
        EmailMessage("Later", "B", "a@example.com", ["t@example.com"]),
        send_at=timezone.now() + timezone.timedelta(days=1),
    )
    assert deliver_queued().sent == 0
    assert mail.outbox == []
