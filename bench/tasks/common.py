"""Database housekeeping run in a child before a measurement (never timed)."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management import call_command
from django.core.management.color import no_style
from django.db import connection

from bench.tasks import task


@task
def migrate() -> dict[str, Any]:
    call_command("migrate", verbosity=0, interactive=False)
    return {"vendor": connection.vendor, "version": _database_version()}


@task
def flush() -> dict[str, Any]:
    flush_tables()
    return {}


def flush_tables() -> None:
    """Empty every table of the installed app (TRUNCATE on PostgreSQL, DELETE on SQLite)."""
    tables = [
        model._meta.db_table
        for model in apps.get_models(include_auto_created=True)
        if model._meta.managed
    ]
    sql = connection.ops.sql_flush(no_style(), tables, reset_sequences=False, allow_cascade=True)
    connection.ops.execute_sql_flush(sql)


def _database_version() -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT sqlite_version()")
        else:
            cursor.execute("SHOW server_version")
        return str(cursor.fetchone()[0])
