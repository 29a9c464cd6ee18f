"""Helpers for testing an application that sends mail through mailroom.

Django's test runner replaces ``EMAIL_BACKEND`` (and every ``MAILERS`` backend) with its
in-memory backend, so by default mail in tests goes straight to ``django.core.mail.outbox``
and mailroom's queue is not involved. To test what your code queues, and what then goes out,
put mailroom back for the test and deliver the queue into the outbox::

    @override_settings(EMAIL_BACKEND="mailroom.backend.EmailBackend")
    def test_signup_sends_a_welcome(client):
        client.post("/signup/", {...})
        mailroom.testing.deliver_queued()
        assert mail.outbox[0].subject == "Welcome"
"""

from __future__ import annotations

from django.conf import settings
from django.test.utils import override_settings

from .conf import raw_settings
from .models import Message, Status
from .worker import Engine, RunStats

LOCMEM = "django.core.mail.backends.locmem.EmailBackend"


def deliver_queued() -> RunStats:
    """Deliver every due queued message through Django's in-memory backend, now.

    Every delivery alias (the configured ones, and any a queued message names) is pointed at
    ``locmem`` for the call, so the messages land in ``django.core.mail.outbox`` exactly as
    mailroom rebuilt them from the queue, and their rows end ``sent`` with their history, as
    in production.
    """
    configured = raw_settings()
    aliases = set((configured.get("BACKENDS") or {}).keys()) | {configured["DEFAULT_BACKEND"]}
    aliases |= set(
        Message.objects.filter(status=Status.QUEUED).values_list("backend", flat=True).distinct()
    )
    overrides = {
        **(getattr(settings, "MAILROOM", None) or {}),
        "BACKENDS": {alias: {"BACKEND": LOCMEM} for alias in aliases},
        "PRERENDER": False,
    }
    with override_settings(MAILROOM=overrides):
        return Engine().send_due()
