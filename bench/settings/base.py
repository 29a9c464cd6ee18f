"""What every benchmark settings module shares: the database and the SMTP sink."""

from __future__ import annotations

import os
from typing import Any

from bench.databases import database_settings

SECRET_KEY = "mailroom-bench"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_FROM_EMAIL = "bench@example.com"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

SMTP_PORT = int(os.environ.get("BENCH_SMTP_PORT", "8025"))
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = SMTP_PORT
EMAIL_TIMEOUT = 30


def databases(app: str) -> dict[str, Any]:
    return {"default": database_settings(app, os.environ.get("BENCH_DB", "sqlite"))}


# Nothing is logged per message by any app at WARNING: a benchmark must not time its console.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "WARNING", "handlers": []},
}
