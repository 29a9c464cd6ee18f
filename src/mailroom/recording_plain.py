"""Writing sent outcomes on SQLite and MySQL/MariaDB in two prepared statements.

The common outcome, a message simply sent, is written after every message, so its cost is on
the send path. Through the ORM each write compiles a bulk INSERT and an UPDATE afresh; here
the two statements' text is made once, and a write is one transaction with one INSERT of the
attempts and one UPDATE of the messages, fenced on the claim token. :func:`mark_sent` is
also the general path's UPDATE, on every database. (PostgreSQL has its own single-statement
version of the whole write in ``recording_pg``; on SQLite the same two statements go straight
to ``sqlite3``, in ``recording_sqlite``.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import connection, transaction

from .columns import insert_statement, stored_fields
from .models import Attempt, Message, Status
from .preparing import preparer


def record_sent_plain(
    attempts: Sequence[Attempt | Mapping[str, Any]],
    ids: Sequence[int],
    *,
    token: str,
    now: datetime,
) -> int:
    """Insert ``attempts`` and mark messages ``ids`` sent. Returns how many were moved."""
    rows = attempt_rows(attempts)
    with transaction.atomic(), connection.cursor() as cursor:
        if len(rows) == 1:
            cursor.execute(insert_sql(), rows[0])
        else:
            cursor.executemany(insert_sql(), rows)
        return mark_sent(ids, token=token, now=now)


def mark_sent(ids: Collection[int], *, token: str, now: datetime) -> int:
    """Move messages ``ids`` to sent, if ``token`` still holds them. Returns how many moved."""
    if not ids:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(*mark_sent_statement(ids, token=token, now=now))
        return int(cursor.rowcount)


def attempt_rows(attempts: Sequence[Attempt | Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """The values of :func:`insert_sql` for each attempt (an Attempt, or its values by field
    as ``recording.attempt_values`` gives them), prepared as the fields prepare them."""
    prepares = _attempt_preparers()
    rows = []
    for attempt in attempts:
        values = attempt if isinstance(attempt, Mapping) else attempt.__dict__
        rows.append(tuple([prepare(values[name]) for name, prepare in prepares]))
    return rows


@functools.cache
def _attempt_preparers() -> list[tuple[str, Callable[[Any], Any]]]:
    return [(f.attname, preparer(f)) for f in stored_fields(Attempt)]


def mark_sent_statement(
    ids: Collection[int], *, token: str, now: datetime, db: Any = connection
) -> tuple[str, list[Any]]:
    """The UPDATE that moves messages ``ids`` to sent if ``token`` holds them, and its values
    (prepared for ``db``, as :func:`attempt_rows`)."""
    when = Message._meta.get_field("sent_at").get_db_prep_save(now, db)
    nothing = Message._meta.get_field("pending_recipients").get_db_prep_save([], db)
    sql = update_sql().format(ids=", ".join(["%s"] * len(ids)))
    return sql, [Status.SENT.value, when, when, nothing, *ids, token]


@functools.cache
def insert_sql() -> str:
    return insert_statement(Attempt, connection, returning=False)


@functools.cache
def update_sql() -> str:
    """The UPDATE, with an ``{ids}`` field for as many placeholders as there are messages."""
    quote = connection.ops.quote_name
    return (
        f"UPDATE {quote(Message._meta.db_table)} SET {quote('status')} = %s, "
        f"{quote('sent_at')} = %s, {quote('last_attempt_at')} = %s, "
        f"{quote('attempts')} = {quote('attempts')} + 1, {quote('pending_recipients')} = %s, "
        f"{quote('reason')} = '', {quote('claimed_by')} = '', {quote('claimed_until')} = NULL "
        f"WHERE {quote('id')} IN ({{ids}}) AND {quote('claimed_by')} = %s"
    )
