"""Django settings for bench/workers.py: a PostgreSQL database and a sink given by the
environment (BENCH_PG_NAME, BENCH_SMTP_PORT, and optionally BENCH_RATE_LIMIT)."""

from __future__ import annotations

import os
from typing import Any

SECRET_KEY = "mailroom-bench-workers"
TIME_ZONE = "UTC"
USE_TZ = True
DEFAULT_FROM_EMAIL = "bench@example.com"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "mailroom"]
EMAIL_BACKEND = "mailroom.backend.EmailBackend"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("BENCH_PG_NAME", "mailroom_bench_workers"),
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "5432",
    }
}
_backend: dict[str, Any] = {
    "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    "OPTIONS": {
        "host": "127.0.0.1",
        "port": int(os.environ.get("BENCH_SMTP_PORT", "8025")),
        "timeout": 30,
    },
}
if os.environ.get("BENCH_RATE_LIMIT"):
    _backend["RATE_LIMIT"] = os.environ["BENCH_RATE_LIMIT"]
MAILROOM = {"BACKENDS": {"default": _backend}, "POLL_INTERVAL": 5.0}
