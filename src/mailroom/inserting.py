"""Inserting queued messages: what ``bulk_create`` does, without its cost per value.

``bulk_create`` prepares each of a message's twenty values through its field, row by row,
and on PostgreSQL binds them on the client (Django uses psycopg's client-side binding): each
quoted in Python, the stored MIME bytes escaped byte by byte, and the server then parses a
statement as long as all of them. For a bulk enqueue that is most of the time.

- PostgreSQL through psycopg 3, from two rows: ``COPY ... FROM STDIN`` in binary
  format. The ids are taken from the table's sequence first (one query), so they are known,
  in the input order, without RETURNING. Bytes travel as they are, numbers and dates in
  PostgreSQL's own binary form, and the rows stream while psycopg formats the next ones.
- PostgreSQL otherwise (psycopg2, naive datetimes): the rows travel as one JSON
  document, which the standard library encodes in C and PostgreSQL unpacks with
  ``jsonb_to_recordset``: one short statement whose text is the same for any number of rows,
  the ids returned in order.
- SQLite: a multi-row ``INSERT ... RETURNING``, with the values every message of the call
  shares (status, dates, counters...) prepared once per call instead of once per row.
- MySQL/MariaDB, and a single row anywhere but SQLite: ``bulk_create``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import operator
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connection, models, transaction

from .columns import json_row, stored_fields
from .models import Message


def insert(rows: Sequence[Message]) -> list[Message]:
    """Save ``rows`` (new messages) and return them with their ids, as bulk_create does."""
    if not rows:
        return []
    if connection.vendor == "sqlite" and connection.features.can_return_rows_from_bulk_insert:
        return _insert_sqlite(rows)
    # One row on PostgreSQL too: a plain INSERT is planned in a fraction of the time the
    # JSON document's INSERT ... SELECT takes (measured: 320-520 against 600-680 us of the
    # server's CPU per call), and COPY would take a second round trip for the id.
    if connection.vendor != "postgresql" or len(rows) == 1:
        return Message.objects.bulk_create(rows)
    # From two rows on COPY is faster than the JSON document (measured: 10 rows 1.2 ms
    # against 1.9, 200 rows 13 ms against 30).
    if _copyable(rows):
        return _insert_copy(rows)
    return _insert_json(rows)


def _insert_json(rows: Sequence[Message]) -> list[Message]:
    documents = _documents([json.dumps(json_row(m), separators=(",", ":")) for m in rows])
    ids: list[int] = []
    # One statement is atomic on its own; several must stand or fall together.
    several = len(documents) > 1
    with transaction.atomic() if several else contextlib.nullcontext(), connection.cursor() as c:
        for document in documents:
            c.execute(_statement(), [document])
            ids.extend(pk for (pk,) in c.fetchall())
    return _saved(rows, ids)


#: The most JSON text in one statement. PostgreSQL cannot take a value of 1 GB or more, and
#: a few megabytes already make the cost per row as low as it gets.
_DOCUMENT_LIMIT = 16 * 1024 * 1024


def _documents(rows: list[str]) -> list[str]:
    """The rows' JSON texts gathered into arrays of at most _DOCUMENT_LIMIT (one row at least)."""
    documents: list[str] = []
    chunk: list[str] = []
    size = 0
    for row in rows:
        if chunk and size + len(row) > _DOCUMENT_LIMIT:
            documents.append("[" + ",".join(chunk) + "]")
            chunk, size = [], 0
        chunk.append(row)
        size += len(row) + 1
    documents.append("[" + ",".join(chunk) + "]")
    return documents


def _saved(rows: Sequence[Message], ids: Sequence[int]) -> list[Message]:
    for message, pk in zip(rows, ids, strict=True):
        message.pk = pk
        message._state.adding = False
        message._state.db = connection.alias
    return list(rows)


#: SQLite's limit on parameters in one statement since 3.32 (Django assumes the older 999).
_SQLITE_MAX_PARAMS = 32766


def _insert_sqlite(rows: Sequence[Message]) -> list[Message]:
    fields = stored_fields(Message)
    first = rows[0]
    # A value every row shares is prepared once: a call's messages have the same status,
    # priority, dates and counters, and differ in a handful of fields.
    shared: dict[str, Any] = {}
    for field in fields:
        value = getattr(first, field.attname)
        if all(getattr(row, field.attname) == value for row in rows):
            shared[field.attname] = field.get_db_prep_save(value, connection)
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    row_marks = "(" + ", ".join(["%s"] * len(fields)) + ")"
    per_statement = max(1, _SQLITE_MAX_PARAMS // len(fields))
    ids: list[int] = []
    # One statement is atomic on its own; several must stand or fall together.
    several = len(rows) > per_statement
    with (
        transaction.atomic() if several else contextlib.nullcontext(),
        connection.cursor() as cursor,
    ):
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            params: list[Any] = []
            for row in chunk:
                params.extend(
                    shared[f.attname]
                    if f.attname in shared
                    else f.get_db_prep_save(getattr(row, f.attname), connection)
                    for f in fields
                )
            cursor.execute(
                f"INSERT INTO {quote(Message._meta.db_table)} ({columns}) "
                f"VALUES {', '.join([row_marks] * len(chunk))} "
                f"RETURNING {quote(Message._meta.pk.column)}",  # type: ignore[union-attr]
                params,
            )
            # Ids grow in insertion order (AUTOINCREMENT); sorting them does not rely on the
            # order RETURNING happens to emit them in.
            ids.extend(sorted(pk for (pk,) in cursor.fetchall()))
    return _saved(rows, ids)


def _copyable(rows: Sequence[Message]) -> bool:
    """Whether ``rows`` can go through COPY and be stored exactly as the JSON path stores them."""
    if not _is_psycopg3() or _copy_types() is None:
        return False
    return _all_aware(rows)


def _all_aware(rows: Sequence[Message]) -> bool:
    """Whether every datetime in ``rows`` is aware. A naive one has no binary form for
    timestamptz; the JSON path lets PostgreSQL read it in the session's time zone, as it
    always has."""
    names = [f.attname for f in stored_fields(Message) if isinstance(f, models.DateTimeField)]
    get = operator.attrgetter(*names)
    # The rows of one call share their dates (or have none): each distinct one is checked once.
    values: set[object] = set()
    for row in rows:
        got = get(row)
        values.update(got if len(names) > 1 else [got])
    return all(not isinstance(v, datetime) or v.utcoffset() is not None for v in values)


def _is_psycopg3() -> bool:
    connection.ensure_connection()
    try:
        import psycopg
    except ImportError:  # psycopg2 only
        return False
    return isinstance(connection.connection, psycopg.Connection)


def _insert_copy(rows: Sequence[Message]) -> list[Message]:
    quote = connection.ops.quote_name
    pk = Message._meta.pk
    assert pk is not None
    fields = stored_fields(Message)
    values = operator.attrgetter(*(f.attname for f in fields))
    table = quote(Message._meta.db_table)
    columns = ", ".join(quote(c) for c in [pk.column, *(f.column for f in fields)])
    with connection.cursor() as cursor:
        # The sequence's values are taken ahead, one per row: whatever other sessions take
        # meanwhile, these are ours, and sorted they follow the input as RETURNING's would.
        cursor.execute(
            "WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence(%s, %s) AS seq) "
            "SELECT nextval(s.seq) FROM s, generate_series(1, %s)",
            [Message._meta.db_table, pk.column, len(rows)],
        )
        ids = sorted(pk_value for (pk_value,) in cursor.fetchall())
        # One COPY statement, however many rows: atomic on its own, and it has no size limit
        # (only each value has). psycopg sends every 32 KB it has formatted, so the server
        # stores rows while the next ones are formatted.
        with (
            connection.wrap_database_errors,
            cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types(_copy_types())
            for pk_value, row in zip(ids, rows, strict=True):
                copy.write_row((pk_value, *values(row)))
        if connection.queries_logged:
            # Made on psycopg's own cursor, so Django's wrappers do not see it: logged here,
            # so that query counts (tests, the debug toolbar, assertNumQueries) include it.
            connection.queries_log.append(
                {"sql": f"COPY {table} FROM STDIN ({len(rows)} rows)", "time": "0"}
            )
    return _saved(rows, ids)


@functools.cache
def _copy_types() -> list[str] | None:
    """The PostgreSQL types of the pk and the stored columns, as psycopg names them, or None
    if one has no name psycopg knows (binary COPY must be told every column's type)."""
    from psycopg.postgres import types

    pk = Message._meta.pk
    assert pk is not None
    names: list[str] = []
    for field in [pk, *stored_fields(Message)]:
        # "varchar(16)" -> "varchar": the binary form does not depend on the modifier.
        name = str(field.db_type(connection)).split("(", 1)[0].strip()
        if types.get(name) is None:
            return None
        names.append(name)
    return names


@functools.cache
def _statement() -> str:
    quote = connection.ops.quote_name
    fields = stored_fields(Message)
    columns = ", ".join(quote(f.column) for f in fields)
    # Bytes travel as base64 text; everything else as PostgreSQL's own column type.
    typed = ", ".join(
        f"{quote(f.column)} {'text' if _is_binary(f) else f.db_type(connection)}" for f in fields
    )
    values = ", ".join(
        f"decode(r.{quote(f.column)}, 'base64')" if _is_binary(f) else f"r.{quote(f.column)}"
        for f in fields
    )
    table = quote(Message._meta.db_table)
    # WITH ORDINALITY and ORDER BY: rows are inserted, and their ids returned, in the
    # document's order.
    names = ", ".join(quote(f.column) for f in fields)
    return (
        f"INSERT INTO {table} ({columns}) SELECT {values} "
        f"FROM ROWS FROM (jsonb_to_recordset(%s::jsonb) AS ({typed})) "
        f"WITH ORDINALITY AS r({names}, _n) "
        f"ORDER BY r._n RETURNING {quote(Message._meta.pk.column)}"  # type: ignore[union-attr]
    )


def _is_binary(field: models.Field[Any, Any]) -> bool:
    return isinstance(field, models.BinaryField)
