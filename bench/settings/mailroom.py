"""mailroom, delivering to the sink through Django's SMTP backend."""

from __future__ import annotations

import os

from bench.settings.base import *  # noqa: F403
from bench.settings.base import SMTP_PORT, databases

INSTALLED_APPS = ["mailroom"]
DATABASES = databases("mailroom")
EMAIL_BACKEND = "mailroom.backend.EmailBackend"
MAILROOM = {
    "BACKENDS": {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": SMTP_PORT, "timeout": 30},
        }
    },
    "BATCH_SIZE": int(os.environ.get("BENCH_BATCH_SIZE", "100")),
}
# Unset: mailroom's default. A configuration may ask for outcomes written in bulk.
if os.environ.get("BENCH_FLUSH_EVERY"):
    MAILROOM["FLUSH_EVERY"] = int(os.environ["BENCH_FLUSH_EVERY"])
# Unset: mailroom's default (on SQLite in a rollback journal, sends noted in the outcome log).
# "0": a database commit per message.
if os.environ.get("BENCH_SQLITE_OUTCOME_LOG"):
    MAILROOM["SQLITE_OUTCOME_LOG"] = os.environ["BENCH_SQLITE_OUTCOME_LOG"] == "1"
# Unset: mailroom's default (pipelining where the server offers it). "0": one command at a
# time, what mailroom does with a server that does not offer PIPELINING.
if os.environ.get("BENCH_SMTP_PIPELINING"):
    MAILROOM["SMTP_PIPELINING"] = os.environ["BENCH_SMTP_PIPELINING"] == "1"
