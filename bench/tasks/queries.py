"""Database queries for one happy-path batch, at several batch sizes (a count, not a time).

Counted with the settings as shipped, and again with ``FLUSH_EVERY`` set to the batch size
(outcomes written in bulk once per batch) where this version of mailroom has that setting.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings

from bench.tasks import messages, task
from bench.tasks.common import flush_tables

ATTEMPT_INSERT = 'INSERT INTO "mailroom_attempt"'


def _count_one_batch(size: int) -> tuple[int, int]:
    """Queue ``size`` messages, deliver them as one batch: (queries, attempt INSERTs)."""
    from mailroom import enqueue_many
    from mailroom.models import Message
    from mailroom.worker import Engine, RunStats

    flush_tables()
    enqueue_many(messages.build_many(size))
    with CaptureQueriesContext(connection) as queries:
        claimed = Engine(batch_size=size).run_batch(RunStats())
    sent = Message.objects.filter(status="sent").count()
    if claimed != size or sent != size:
        raise AssertionError(f"batch of {size}: claimed {claimed}, sent {sent}")
    # SQLite: Django splits a bulk INSERT above 999 parameters, so the attempts of a big
    # batch take several INSERTs; everything else must stay the same.
    return len(queries), sum(q["sql"].startswith(ATTEMPT_INSERT) for q in queries)


def _has_flush_every() -> bool:
    from mailroom import conf

    return "FLUSH_EVERY" in conf.DEFAULTS


@task
def per_batch(sizes: list[int]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    inserts: dict[str, int] = {}
    bulk_flush: dict[str, int] = {}
    for size in sizes:
        counts[str(size)], inserts[str(size)] = _count_one_batch(size)
        if _has_flush_every():
            with override_settings(MAILROOM={**settings.MAILROOM, "FLUSH_EVERY": size}):
                bulk_flush[str(size)], _ = _count_one_batch(size)
    sent = sum(sizes) * (2 if bulk_flush else 1)
    return {"queries": counts, "attempt_inserts": inserts, "bulk_flush": bulk_flush, "sent": sent}
