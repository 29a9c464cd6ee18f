"""Database queries for one happy-path batch, at several batch sizes (a count, not a time)."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench.tasks import messages, task
from bench.tasks.common import flush_tables


@task
def per_batch(sizes: list[int]) -> dict[str, Any]:
    """For each size: queue that many messages, deliver them as one batch, count queries."""
    from mailroom import enqueue_many
    from mailroom.models import Message
    from mailroom.worker import Engine, RunStats

    counts: dict[str, int] = {}
    inserts: dict[str, int] = {}
    for size in sizes:
        flush_tables()
        enqueue_many(messages.build_many(size))
        with CaptureQueriesContext(connection) as queries:
            claimed = Engine(batch_size=size).run_batch(RunStats())
        sent = Message.objects.filter(status="sent").count()
        if claimed != size or sent != size:
            raise AssertionError(f"batch of {size}: claimed {claimed}, sent {sent}")
        counts[str(size)] = len(queries)
        inserts[str(size)] = sum(q["sql"].startswith('INSERT INTO "mailroom_attempt"') for q in queries)
    # SQLite: Django splits a bulk INSERT above 999 parameters, so the attempts of a big batch
    # take several INSERTs; everything else must stay the same.
    return {"queries": counts, "attempt_inserts": inserts, "sent": sum(sizes)}
