"""The cost of picking one batch as the queue grows, and the worker's memory at each depth.

The queue is filled fast by cloning one row enqueued through the app's own API, in SQL:
``INSERT ... SELECT`` over ``generate_series`` on PostgreSQL and over a recursive CTE on SQLite
(a million rows in seconds). Each clone is a valid queued message with a small payload; its
time column steps back one second per clone, so the rows do not all share one sort key.
On PostgreSQL statistics are refreshed after a fill (``VACUUM (ANALYZE)``, as autovacuum would);
SQLite is left without, as a Django app's SQLite database is.
"""

from __future__ import annotations

import itertools
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.db import connection
from django.db.models import Model, Q
from django.utils import timezone

from bench.tasks import installed_app, messages, peak_rss_mb, task

BATCH = 100


@dataclass(frozen=True, kw_only=True)
class QueueTable:
    """Where an app keeps its queue, and how one message gets into it."""

    model: str
    queued: Q
    time_column: str
    enqueue_one: Callable[[], None]
    #: A table holding one row per message beside it, keyed by the message's id (mailroom's
    #: MessageContent): its row is cloned for every cloned message.
    beside: str | None = None


def _mailroom_one() -> None:
    from mailroom import enqueue

    enqueue(messages.build(0, "small"))


def _mailer_one() -> None:
    from mailer import send_mail

    send_mail(messages.subject(0), messages.SMALL_BODY, messages.SENDER, ["r0@example.com"])


def _post_office_one() -> None:
    from post_office import mail

    mail.send(
        recipients=["r0@example.com"],
        sender=messages.SENDER,
        subject=messages.subject(0),
        message=messages.SMALL_BODY,
    )


TABLES = {
    "mailroom": QueueTable(
        model="mailroom.Message",
        queued=Q(status="queued"),
        time_column="due_at",
        enqueue_one=_mailroom_one,
        beside="mailroom.MessageContent",
    ),
    "mailer": QueueTable(
        model="mailer.Message", queued=Q(), time_column="when_added", enqueue_one=_mailer_one
    ),
    "post_office": QueueTable(
        model="post_office.Email",
        queued=Q(status=2),  # STATUS.queued
        time_column="created",
        enqueue_one=_post_office_one,
    ),
}


def _clone_sql(model: type[Model], time_column: str) -> str:
    """INSERT ... SELECT of ``%s`` copies of the row whose id is ``%s``."""
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    columns = [f.column for f in model._meta.concrete_fields if not f.primary_key]
    postgres = connection.vendor == "postgresql"
    shifted = (
        f"src.{qn(time_column)} - g.n * interval '1 second'"
        if postgres
        else f"datetime(src.{qn(time_column)}, '-' || g.n || ' seconds')"
    )
    values = ", ".join(shifted if c == time_column else f"src.{qn(c)}" for c in columns)
    insert = f"INSERT INTO {table} ({', '.join(qn(c) for c in columns)}) SELECT {values}"
    if postgres:
        return f"{insert} FROM {table} src, generate_series(1, %s) AS g(n) WHERE src.id = %s"
    return (
        "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < %s) "
        f"{insert} FROM {table} src, g WHERE src.id = %s"
    )


def _clone_beside_sql(model: type[Model], beside: type[Model]) -> str:
    """INSERT ... SELECT of the row of ``beside`` whose key is ``%s`` for every message of
    ``model`` with an id above ``%s``."""
    qn = connection.ops.quote_name
    key, *columns = [f.column for f in beside._meta.concrete_fields]
    return (
        f"INSERT INTO {qn(beside._meta.db_table)} ({qn(key)}, {', '.join(map(qn, columns))}) "
        f"SELECT m.id, {', '.join(f'src.{qn(c)}' for c in columns)} "
        f"FROM {qn(model._meta.db_table)} m, {qn(beside._meta.db_table)} src "
        f"WHERE src.{qn(key)} = %s AND m.id > %s"
    )


def _refresh_sql(model: type[Model]) -> str | None:
    """On PostgreSQL, statistics for the planner, as autovacuum would gather after such a
    change, and a VACUUM too (a second for a million rows): left to autovacuum, it would start
    in the middle of a measurement and compete with it.

    On SQLite nothing: nothing in a Django app runs ANALYZE, so its planner works without
    statistics, and the pick-up is measured as it runs there. (With them, a claim that walked
    the whole queue went unseen: the CHANGELOG's entry for the SQLite claim.)"""
    if connection.vendor != "postgresql":
        return None
    return f"VACUUM (ANALYZE) {connection.ops.quote_name(model._meta.db_table)}"


@task
def fill(depth: int) -> dict[str, Any]:
    """Bring the app's queue to ``depth`` queued messages (it only ever grows)."""
    spec = TABLES[installed_app()]
    model = apps.get_model(spec.model)
    queued = model._default_manager.filter(spec.queued)
    t0 = time.perf_counter()
    if not queued.exists():
        spec.enqueue_one()
    template = queued.order_by("pk").values_list("pk", flat=True).first()
    missing = depth - queued.count()
    if missing > 0:
        above = model._default_manager.order_by("-pk").values_list("pk", flat=True).first()
        with connection.cursor() as cursor:
            cursor.execute(_clone_sql(model, spec.time_column), [missing, template])
            tables = [model]
            if spec.beside is not None:
                beside = apps.get_model(spec.beside)
                cursor.execute(_clone_beside_sql(model, beside), [template, above])
                tables.append(beside)
            for table in tables:
                refresh = _refresh_sql(table)
                if refresh is not None:
                    cursor.execute(refresh)
    seconds = time.perf_counter() - t0
    _settle_writes()
    return {"seconds": seconds, "queued": queued.count(), "depth": depth}


def _settle_writes() -> None:
    """Put the fill's writes on disk before any claim is timed.

    A million cloned rows are gigabytes that the kernel (SQLite) or PostgreSQL's background
    writer would otherwise still be writing back during the measurement, and every claim
    is a commit that waits for its own sync behind them: seen as claims at 1,000,000 that
    took 4.8 ms at best and 7.4 ms at the median, against 5.2 at 1,000. Not timed.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("CHECKPOINT")
    os.sync()


@task
def mailroom_claim(repeats: int) -> dict[str, Any]:
    """Time ``claiming.claim`` of one batch (then release it), ``repeats`` times.

    A claim is a write transaction: on SQLite (rollback journal) its time is mostly the
    commit's fsync, which is why the median of several is taken.
    """
    from mailroom.claiming import claim, release

    connection.ensure_connection()
    times = []
    # One claim first, not counted: the measure is a running worker's, with warm caches.
    for k in range(repeats + 1):
        token = f"bench-pickup:{k}"
        t0 = time.perf_counter()
        rows = claim(token=token, now=timezone.now(), limit=BATCH, lease=300)
        times.append(time.perf_counter() - t0)
        if len(rows) != BATCH:
            raise AssertionError(f"claimed {len(rows)} rows, expected {BATCH}")
        release([row.pk for row in rows], token=token)
    times = times[1:]
    return {"seconds": statistics.median(times), "times": times, "rss_mb": peak_rss_mb()}


@task
def mailroom_batch_memory() -> dict[str, Any]:
    """A fresh worker process claims one batch and sends it to the sink: its peak memory."""
    from mailroom.worker import Engine, RunStats

    connection.ensure_connection()
    before = peak_rss_mb()
    stats = RunStats()
    t0 = time.perf_counter()
    Engine(batch_size=BATCH).run_batch(stats)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "sent": stats.sent,
        "rss_before_mb": before,
        "rss_mb": peak_rss_mb(),
    }


def _mailer_pickup() -> int:
    # send_all() iterates prioritize(); iterating a QuerySet loads all of it before the first row.
    from mailer.engine import prioritize

    return len(list(itertools.islice(iter(prioritize()), BATCH)))


def _post_office_pickup() -> int:
    from post_office.mail import attach_templates, get_queued

    emails = list(get_queued())
    attach_templates(emails)
    return len(emails)


PEER_PICKUP: dict[str, Callable[[], int]] = {
    "mailer": _mailer_pickup,
    "post_office": _post_office_pickup,
}


@task
def peer_pickup(repeats: int) -> dict[str, Any]:
    """The first batch as the peer's sender picks it, ``repeats`` times; peak memory."""
    app = installed_app()
    connection.ensure_connection()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        got = PEER_PICKUP[app]()
        times.append(time.perf_counter() - t0)
        if got != BATCH:
            raise AssertionError(f"{app} picked {got} messages, expected {BATCH}")
    return {"seconds": statistics.median(times), "times": times, "rss_mb": peak_rss_mb()}
