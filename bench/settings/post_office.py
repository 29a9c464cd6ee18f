"""django-post_office 3.12.0, as its docs set it up. ``BENCH_PO_THREADS`` sets its threads per
process (its default is 5)."""

from __future__ import annotations

import os

from bench.settings.base import *  # noqa: F403
from bench.settings.base import databases

INSTALLED_APPS = ["post_office"]
DATABASES = databases("post_office")
EMAIL_BACKEND = "post_office.EmailBackend"
POST_OFFICE = {
    "BACKENDS": {"default": "django.core.mail.backends.smtp.EmailBackend"},
    "THREADS_PER_PROCESS": int(os.environ.get("BENCH_PO_THREADS", "5")),
}
# post_office renders subject and body as Django templates at enqueue, even without a template.
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates"}]
