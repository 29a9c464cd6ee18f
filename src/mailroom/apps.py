"""Django app configuration."""

from __future__ import annotations

from django.apps import AppConfig


class MailroomConfig(AppConfig):
    name = "mailroom"
    verbose_name = "Mailroom"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import (
            checks,  # noqa: F401  (registers the system checks)
            signals,
            suppression,
        )

        # Always connected; the receiver reads MAILROOM["AUTO_SUPPRESS"] at each call, so the
        # setting can change (override_settings) without reconnecting anything.
        for signal in (signals.message_sent, signals.retry_scheduled, signals.message_failed):
            signal.connect(suppression.auto_suppress, dispatch_uid="mailroom.auto_suppress")
