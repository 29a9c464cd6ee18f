"""The admin on a million messages (PostgreSQL): queries and time for the list, a search, a filter.

Run from the checkout, with PostgreSQL up (the MAILROOM_PG_* variables as for the tests)::

    .venv/bin/python bench/admin_figures.py [--rows 1000000] [--repeat 5] [--keep]
                                             [--proposed-indexes]

It builds a database of its own (``mailroom_admin_bench``; dropped at the end unless --keep, and
reused by a later run that finds it full), queues one real message through ``mailroom.enqueue``
and clones that row with ``INSERT ... SELECT generate_series`` (statuses, backends, priorities,
dates, recipients, subjects and Message-IDs varied) and its content (the real payload, with
each clone's subject and recipients), ANALYZEs them, then requests each admin page through
Django's test client as a logged-in superuser: one warm-up, then the median of ``--repeat``
requests, without the trigram index. ``--proposed-indexes`` then adds the one mailroom's
migration 0009 makes (on the contents; see docs/admin.md) and measures the searches again.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_DB = "mailroom_admin_bench"
PG = {
    "USER": os.environ.get("MAILROOM_PG_USER", "postgres"),
    "HOST": os.environ.get("MAILROOM_PG_HOST", "127.0.0.1"),
    "PORT": os.environ.get("MAILROOM_PG_PORT", "5432"),
}

#: The trigram index mailroom's migrations make (0009: on the contents); the pages are measured
#: first without it (nor those of 0004 and 0005 before it), then with it (--proposed-indexes).
_MIGRATION = importlib.import_module("mailroom.migrations.0009_search_by_content")
_EARLIER = importlib.import_module("mailroom.migrations.0005_search_indexes_by_status")
PROPOSED_INDEXES = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    _MIGRATION.CREATE.replace(" CONCURRENTLY", ""),
]
DROP_INDEXES = [
    sql.replace(" CONCURRENTLY", "")
    for sql in [*_EARLIER.DROP_FULL, *_EARLIER.DROP_PARTIAL, _MIGRATION.DROP]
]

# How each cloned column varies with n (1..rows); the other columns are copied from the real row.
# 90% sent, 5% queued (a fifth of them waiting for a retry), 3% failed, 2% cancelled.
_STATUS = (
    "CASE WHEN mod(n, 100) < 90 THEN 'sent' WHEN mod(n, 100) < 95 THEN 'queued' "
    "WHEN mod(n, 100) < 98 THEN 'failed' ELSE 'cancelled' END"
)
_CREATED = "now() - ((%(rows)s - n) * interval '2.5 seconds')"
VARIED = {
    "status": _STATUS,
    "priority": "CASE mod(n, 10) WHEN 0 THEN 10 WHEN 1 THEN 30 ELSE 20 END",
    "backend": "CASE WHEN mod(n, 10) = 6 THEN 'bulk' ELSE 'default' END",
    "created_at": _CREATED,
    "due_at": f"CASE WHEN mod(n, 100) = 94 THEN now() + interval '1 hour' ELSE {_CREATED} END",
    "sent_at": f"CASE WHEN mod(n, 100) < 90 THEN {_CREATED} + interval '1 second' END",
    "last_attempt_at": f"CASE WHEN mod(n, 100) < 90 OR mod(n, 100) >= 95 THEN {_CREATED} END",
    "attempts": "CASE WHEN mod(n, 100) < 90 THEN 1 "
    "WHEN mod(n, 100) BETWEEN 95 AND 97 THEN 10 ELSE 0 END",
    "message_id": "'<' || n || '.bench@mailroom.test>'",
    "subject": "'Order ' || n || ' has shipped'",
    "recipients": "jsonb_build_array('user' || n || '@example' || mod(n, 1000) || '.com')",
    "reason": "CASE WHEN mod(n, 100) BETWEEN 95 AND 97 THEN '550 5.1.1 mailbox unavailable' "
    "ELSE '' END",
}


def configure() -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "src")]
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="admin-figures",
        DEBUG=False,
        USE_TZ=True,
        ALLOWED_HOSTS=["testserver"],
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.admin",
            "mailroom",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
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
        ],
        ROOT_URLCONF="tests.urls",
        STATIC_URL="/static/",
        DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "NAME": BENCH_DB, **PG}},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        MAILROOM={
            "BACKENDS": {
                "default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"},
                "bulk": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"},
            }
        },
    )
    django.setup()
    from django.test.utils import setup_test_environment

    setup_test_environment()  # so that the test client hands back the template context


def create_database() -> None:
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **_libpq()) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{BENCH_DB}"')


def drop_database() -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect(dbname="postgres", autocommit=True, **_libpq()) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}"')


def _libpq() -> dict[str, str]:
    return {"user": PG["USER"], "host": PG["HOST"], "port": PG["PORT"]}


def fill(rows: int) -> float:
    """Put ``rows`` messages in the table (cloned from one real one); return the seconds taken."""
    from django.core.mail import EmailMultiAlternatives
    from django.db import connection

    import mailroom
    from mailroom.models import Attempt, Message

    started = time.perf_counter()
    message = EmailMultiAlternatives(
        "Order 0 has shipped",
        "Hello,\nyour order is on its way.\n" * 20,
        "shop@example.com",
        ["user0@example0.com"],
    )
    message.attach_alternative("<p>Hello,</p><p>your order is on its way.</p>" * 20, "text/html")
    message.attach("invoice.pdf", b"%PDF-1.4 " + b"x" * 4000, "application/pdf")
    template = mailroom.enqueue(message)
    columns = [f.column for f in Message._meta.concrete_fields if not f.primary_key]
    exprs = [VARIED.get(c, f"t.{connection.ops.quote_name(c)}") for c in columns]
    step = 200_000
    with connection.cursor() as cursor:
        for start in range(1, rows + 1, step):
            stop = min(start + step - 1, rows)
            cursor.execute(
                f"INSERT INTO mailroom_message ({', '.join(columns)}) "
                f"SELECT {', '.join(exprs)} FROM generate_series(%(start)s, %(stop)s) AS g(n), "
                "mailroom_message t WHERE t.id = %(template)s",
                {"start": start, "stop": stop, "rows": rows, "template": template.pk},
            )
            print(f"  {stop:,} rows", file=sys.stderr, flush=True)
        # Each clone's content: the real payload with the clone's subject and recipients (the
        # search reads them there on PostgreSQL), without the MIME bytes, which it never reads.
        for start in range(template.pk + 1, template.pk + rows + 1, step):
            cursor.execute(
                "INSERT INTO mailroom_messagecontent (message_id, payload) "
                "SELECT m.id, t.payload || jsonb_build_object('subject', m.subject, "
                "'to', m.recipients) FROM mailroom_message m, mailroom_messagecontent t "
                "WHERE t.message_id = %(template)s AND m.id BETWEEN %(start)s AND %(stop)s",
                {"template": template.pk, "start": start, "stop": start + step - 1},
            )
        cursor.execute("ANALYZE mailroom_message")
        cursor.execute("ANALYZE mailroom_messagecontent")
    # A few attempts for the message page.
    Attempt.objects.bulk_create(
        Attempt(
            message=template,
            started_at=template.created_at,
            duration=0.2,
            backend="default",
            verdict=verdict,
            reason=reason,
        )
        for verdict, reason in [("backend_down", "connection refused"), ("retry", "421 busy")]
    )
    return time.perf_counter() - started


@dataclass(frozen=True)
class Figure:
    page: str
    queries: int
    median_ms: float
    sql_ms: float
    slowest_sql_ms: float
    shown: str


class QueryTimer:
    """Times every query of a request (Django's own query log keeps only milliseconds)."""

    def __init__(self) -> None:
        self.durations: list[float] = []

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.durations.append((time.perf_counter() - started) * 1000)


def measure(client: Any, page: str, url: str, repeat: int) -> Figure:
    from django.db import connection

    response = client.get(url)  # warm-up: caches, plans, buffers
    assert response.status_code == 200, (url, response.status_code)
    times, captured = [], []
    for _ in range(repeat):
        timer = QueryTimer()
        with connection.execute_wrapper(timer):
            started = time.perf_counter()
            response = client.get(url)
            times.append(time.perf_counter() - started)
        captured.append(timer.durations)
    assert response.status_code == 200, (url, response.status_code)
    changelist = response.context.get("cl") if response.context else None
    shown = "-"
    if changelist is not None:
        kind = changelist.paginator.count_kind
        shown = f"{len(changelist.result_list)} of {changelist.result_count:,} ({kind})"
    middle = captured[len(captured) // 2]
    return Figure(
        page=page,
        queries=len(middle),
        median_ms=statistics.median(times) * 1000,
        sql_ms=statistics.median(sum(c) for c in captured),
        slowest_sql_ms=statistics.median(max(c) for c in captured),
        shown=shown,
    )


def print_table(title: str, figures: list[Figure]) -> None:
    print(f"\n{title}\n")
    print("| page | queries | time (median) | SQL time | slowest query | rows shown |")
    print("|---|---:|---:|---:|---:|---|")
    for f in figures:
        print(
            f"| {f.page} | {f.queries} | {f.median_ms:.1f} ms | {f.sql_ms:.1f} ms "
            f"| {f.slowest_sql_ms:.1f} ms | {f.shown} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the database for a rerun")
    parser.add_argument("--proposed-indexes", action="store_true")
    options = parser.parse_args()

    configure()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from mailroom.models import Message

    create_database()
    try:
        call_command("migrate", verbosity=0)
        count = Message.objects.count()
        if count < options.rows:
            if count:
                Message.objects.all().delete()
            print(f"Filling {options.rows:,} messages...", file=sys.stderr)
            print(f"  filled in {fill(options.rows):.1f} s", file=sys.stderr)
        with connection.cursor() as cursor:  # a rerun with --keep starts from today's indexes
            for sql in DROP_INDEXES:
                cursor.execute(sql)
        total = Message.objects.count()
        user = User.objects.filter(username="bench").first() or User.objects.create_superuser(
            "bench", "bench@example.com", "bench"
        )
        client = Client()
        client.force_login(user)
        target = options.rows * 3 // 4 + 7  # somewhere in the middle of the table
        address = f"user{target}@example{target % 1000}.com"
        first = Message.objects.order_by("id").first()
        assert first is not None
        base = "/admin/mailroom/message/"
        pages = [
            ("list (page 1)", base),
            ("list, page 50", f"{base}?p=50"),
            (
                "search: a whole recipient address",
                f"{base}?q={address}",
            ),
            ("search: a recipient's domain (0.1%)", f"{base}?q=@example{target % 1000}.com"),
            ("search: a Message-ID", f"{base}?q=<{target}.bench@mailroom.test>"),
            ("filter: status failed (3%)", f"{base}?status__exact=failed"),
            ("filter: status sent (90%)", f"{base}?status__exact=sent"),
            ("filter: status failed + backend bulk", f"{base}?status__exact=failed&backend=bulk"),
            (
                "message page (2 attempts)",
                f"{base}{first.pk}/change/",
            ),
        ]
        with connection.cursor() as cursor:
            cursor.execute("SELECT version()")
            version = cursor.fetchone()[0].split(",")[0]
        print(f"\n{total:,} messages; {version}; {options.repeat} requests per page (median)")
        print_table(
            "Without the trigram index",
            [measure(client, name, url, options.repeat) for name, url in pages],
        )
        if options.proposed_indexes:
            started = time.perf_counter()
            with connection.cursor() as cursor:
                for sql in PROPOSED_INDEXES:
                    cursor.execute(sql)
                cursor.execute("ANALYZE mailroom_messagecontent")
            took = time.perf_counter() - started
            searches = [(name, url) for name, url in pages if name.startswith(("search", "list ("))]
            print_table(
                f"With the trigram index of migration 0009 (built in {took:.0f} s)",
                [measure(client, name, url, options.repeat) for name, url in searches],
            )
    finally:
        if not options.keep:
            drop_database()


if __name__ == "__main__":
    main()
