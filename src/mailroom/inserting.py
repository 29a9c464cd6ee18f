"""Inserting queued messages: what ``bulk_create`` does, without its cost per value.

``bulk_create`` prepares each of a message's twenty values through its field, row by row,
and on PostgreSQL binds them on the client (Django uses psycopg's client-side binding): each
quoted in Python, the stored MIME bytes escaped byte by byte, and the server then parses a
statement as long as all of them. For a bulk enqueue that is most of the time.

- PostgreSQL: the rows travel as one JSON document, which the standard library encodes in C
  and PostgreSQL unpacks with ``jsonb_to_recordset``: one short statement whose text is the
  same for any number of rows, the ids returned in order.
- SQLite: a multi-row ``INSERT ... RETURNING``, with the values every message of the call
  shares (status, dates, counters...) prepared once per call instead of once per row.
- MySQL/MariaDB: ``bulk_create``.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Sequence
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
    if connection.vendor != "postgresql":
        return Message.objects.bulk_create(rows)
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
