"""Settings for mailroom's demo project: SQLite, and a local SMTP server as the real backend.

Mail sent through Django's usual API is queued by mailroom (``EMAIL_BACKEND``); the worker
(``manage.py mailroom send``) delivers it through the ``default`` delivery backend below. No
``MAILERS`` setting is needed on Django 6.1: ``EMAIL_BACKEND`` works there too.
"""

from __future__ import annotations

import os
from pathlib import Path

EXAMPLE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "mailroom-demo-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "mailroom",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "demo_project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# The demo deletes and re-creates this file on every run (example/*.sqlite3 is gitignored).
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": EXAMPLE_DIR / "demo.sqlite3",
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "static/"

DEFAULT_FROM_EMAIL = "Mailroom demo <demo@example.com>"

# Every message sent through Django's mail API is queued in the database instead of sent.
EMAIL_BACKEND = "mailroom.backend.EmailBackend"

MAILROOM = {
    # The real delivery backend: the scripted SMTP server that demo.py starts on 127.0.0.1
    # (on the port it passes in DEMO_SMTP_PORT).
    "BACKENDS": {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {
                "host": "127.0.0.1",
                "port": int(os.environ.get("DEMO_SMTP_PORT", "8025")),
                "timeout": 5,
            },
        }
    },
    # Seconds, not minutes, so that the demo's retries and its backend pause play out in a
    # few seconds. Real deployments keep the defaults (a minute's message backoff doubling up
    # to six hours, a 15 s backend pause growing to ten minutes, ten attempts): a greylisting
    # server wants minutes between tries, and an outage should not be hammered.
    "BACKOFF_BASE": 1,
    "BACKEND_BACKOFF_BASE": 1,
    "BACKEND_BACKOFF_CAP": 3,
    "MAX_ATTEMPTS": 4,
}

# Quiet, except mailroom's own warnings (a message failed, a backend paused), one compact line
# each. They go to stdout so that they interleave in order with the demo's own output.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"compact": {"format": "  ! %(levelname)s %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "compact",
        }
    },
    "root": {"handlers": ["console"], "level": "ERROR"},
    "loggers": {
        "mailroom": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
