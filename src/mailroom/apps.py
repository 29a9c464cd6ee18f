"""Django app configuration."""

from __future__ import annotations

from django.apps import AppConfig


class MailroomConfig(AppConfig):
    name = "mailroom"
    verbose_name = "Mailroom"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
