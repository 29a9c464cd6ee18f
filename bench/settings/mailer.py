"""django-mailer 2.3.2, as its docs set it up: queue through its backend, send over SMTP."""

from __future__ import annotations

import os
import tempfile

from bench.settings.base import *  # noqa: F403
from bench.settings.base import databases

INSTALLED_APPS = ["mailer"]
DATABASES = databases("mailer")
EMAIL_BACKEND = "mailer.backend.DbBackend"
MAILER_EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
# Its lock file defaults to the working directory; keep it out of the repository.
MAILER_LOCK_PATH = os.path.join(tempfile.gettempdir(), "mailroom-bench-mailer")
