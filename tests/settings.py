"""Settings for mailroom's own test suite.

``MAILROOM_TEST_DB`` picks the database: ``sqlite`` (default), ``postgres`` or ``mariadb``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from typing import Any

SECRET_KEY = "mailroom-tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
DEFAULT_FROM_EMAIL = "app@example.com"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "mailroom",
]
# The peers whose queues `mailroom import` moves (tests/integration/test_import.py), where
# installed: both load cleanly on Django 5.2 and 6.1.
INSTALLED_APPS += [app for app in ("mailer", "post_office") if importlib.util.find_spec(app)]

_db = os.environ.get("MAILROOM_TEST_DB", "sqlite")
if _db == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("MAILROOM_PG_NAME", "postgres"),
            "USER": os.environ.get("MAILROOM_PG_USER", "postgres"),
            "HOST": os.environ.get("MAILROOM_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("MAILROOM_PG_PORT", "5432"),
            "TEST": {
                "NAME": os.environ.get("MAILROOM_PG_TEST_NAME", f"test_mailroom_{os.getpid()}")
            },
        }
    }
elif _db == "mariadb":
    # PyMySQL (pure Python) stands in for mysqlclient, which needs C headers to build.
    import pymysql

    pymysql.install_as_MySQLdb()
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": "mailroom",
            "USER": "root",
            "HOST": "127.0.0.1",
            "PORT": os.environ.get("MAILROOM_MARIADB_PORT", "3306"),
            "TEST": {
                "NAME": os.environ.get("MAILROOM_MARIADB_TEST_NAME", f"test_mailroom_{os.getpid()}")
            },
            "OPTIONS": {"charset": "utf8mb4"},
        }
    }
else:
    # A file database (not :memory:) so that worker subprocesses can share it, named after
    # this checkout so that two checkouts on one machine never share one.
    _tag = hashlib.sha1(os.path.dirname(os.path.abspath(__file__)).encode()).hexdigest()[:8]
    _dir = tempfile.gettempdir()
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(_dir, f"mailroom-tests-{_tag}.sqlite3"),
            # Per pytest process, so two runs on one machine never share a test database.
            "TEST": {"NAME": os.path.join(_dir, f"mailroom-tests-{_tag}-{os.getpid()}.sqlite3")},
            # What mailroom's docs advise for SQLite shared by several processes: take the
            # write lock at BEGIN, so that no transaction fails with "database is locked"
            # when it upgrades from reading to writing while a worker writes.
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        }
    }

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
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
ROOT_URLCONF = "tests.urls"

EMAIL_BACKEND = "mailroom.backend.EmailBackend"
MAILROOM: dict[str, Any] = {
    "BACKENDS": {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": 1, "timeout": 5},
        }
    },
}

if os.environ.get("MAILROOM_TEST_BAD_SETTINGS"):
    # Used by a test that runs a real process: a setting the system checks refuse.
    MAILROOM = {"MAX_ATTEMPTS": 0}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"mailroom": {"handlers": ["console"], "level": "WARNING"}},
}
