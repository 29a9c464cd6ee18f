"""Settings for worker subprocesses started by the process tests.

They are the test settings, pointed (through the environment) at the test database the
parent pytest process created, and at the parent's SMTP sink.
"""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES, MAILROOM

DATABASES["default"]["NAME"] = os.environ["MAILROOM_WORKER_DB_NAME"]
if "MAILROOM_WORKER_LISTEN_DIRECT" in os.environ:
    # The same database on the same server, not through MAILROOM_WORKER_DB_PORT (a pooler).
    DATABASES["direct"] = dict(DATABASES["default"])
    MAILROOM["LISTEN_DATABASE"] = "direct"
if "MAILROOM_WORKER_DB_PORT" in os.environ:
    DATABASES["default"]["PORT"] = os.environ["MAILROOM_WORKER_DB_PORT"]
if "MAILROOM_WORKER_BEHIND_POOLER" in os.environ:
    # What Django's documentation asks for behind a pooler in transaction mode.
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
MAILROOM["BACKENDS"]["default"]["OPTIONS"].update(
    host="127.0.0.1", port=int(os.environ["MAILROOM_WORKER_SMTP_PORT"]), timeout=10
)
for key in ("LEASE", "FLUSH_EVERY", "POLL_INTERVAL", "BATCH_SIZE", "BURST_PATIENCE"):
    if f"MAILROOM_WORKER_{key}" in os.environ:
        MAILROOM[key] = float(os.environ[f"MAILROOM_WORKER_{key}"])
        if key in ("FLUSH_EVERY", "BATCH_SIZE"):
            MAILROOM[key] = int(MAILROOM[key])
if "MAILROOM_WORKER_SQLITE_OUTCOME_LOG" in os.environ:
    MAILROOM["SQLITE_OUTCOME_LOG"] = os.environ["MAILROOM_WORKER_SQLITE_OUTCOME_LOG"] == "True"
if "MAILROOM_WORKER_RATE_LIMIT" in os.environ:
    MAILROOM["BACKENDS"]["default"]["RATE_LIMIT"] = os.environ["MAILROOM_WORKER_RATE_LIMIT"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"mailroom": {"handlers": ["console"], "level": "INFO"}},
}
