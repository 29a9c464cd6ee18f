"""Django settings for the benchmarks. ``BENCH_DB`` = ``sqlite`` (default) or ``postgres``;
``BENCH_SMTP_PORT`` is the sink's port."""

from __future__ import annotations

import os
import tempfile

SECRET_KEY = "mailroom-bench"
USE_TZ = True
DEFAULT_FROM_EMAIL = "bench@example.com"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "mailroom"]
EMAIL_BACKEND = "mailroom.backend.EmailBackend"

if os.environ.get("BENCH_DB", "sqlite") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("BENCH_PG_NAME", "mailroom_bench"),
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": "5432",
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(tempfile.gettempdir(), "mailroom-bench.sqlite3"),
        }
    }

MAILROOM = {
    "BACKENDS": {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {
                "host": "127.0.0.1",
                "port": int(os.environ.get("BENCH_SMTP_PORT", "8025")),
                "timeout": 30,
            },
        }
    },
    "BATCH_SIZE": int(os.environ.get("BENCH_BATCH_SIZE", "100")),
}
