"""Django 6.1: mailroom is a MAILERS entry and delivers through other MAILERS aliases."""

from __future__ import annotations

import django
import pytest
from django.core import mail
from django.core.mail import EmailMessage

from mailroom.checks import check_settings
from mailroom.models import Message, Status
from tests.conftest import SMTP_BACKEND, smtp_options

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(django.VERSION < (6, 1), reason="MAILERS is new in Django 6.1"),
]


@pytest.fixture
def mailers(settings, smtp_server):
    del settings.EMAIL_BACKEND
    del settings.MAILROOM
    settings.MAILERS = {
        "default": {"BACKEND": "mailroom.backend.EmailBackend", "OPTIONS": {"using": "smtp"}},
        "smtp": {"BACKEND": SMTP_BACKEND, "OPTIONS": smtp_options(smtp_server)},
    }
    return settings


def test_send_mail_queues_through_the_default_mailer(mailers, smtp_server, run_send) -> None:
    assert mail.send_mail("Hi", "Body", "a@example.com", ["t@example.com"]) == 1
    row = Message.objects.get()
    assert (row.status, row.backend) == (Status.QUEUED, "smtp")
    assert smtp_server.count == 0
    run_send()
    assert smtp_server.count == 1
    assert Message.objects.get().status == Status.SENT


def test_using_selects_a_mailer_alias(mailers, smtp_server, run_send) -> None:
    EmailMessage("Hi", "Body", "a@example.com", ["t@example.com"]).send(using="default")
    run_send()
    assert smtp_server.count == 1


def test_a_mailroom_mailer_that_delivers_through_itself_is_an_error(mailers) -> None:
    mailers.MAILERS = {
        "default": {"BACKEND": "mailroom.backend.EmailBackend", "OPTIONS": {"using": "default"}},
    }
    assert "mailroom.E008" in [m.id for m in check_settings()]
