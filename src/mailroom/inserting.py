"""Inserting queued messages on PostgreSQL as one JSON document.

``bulk_create`` on PostgreSQL binds some twenty parameters per message on the client (Django
uses psycopg's client-side binding): each is quoted in Python, the stored MIME bytes escaped
byte by byte, and the server then parses a statement as long as all of them. For a bulk
enqueue that is most of the time. Here the rows travel as one JSON document, which the
standard library encodes in C and PostgreSQL unpacks with ``jsonb_to_recordset``: one short
statement whose text is the same for any number of rows, and the ids come back in order.

Other databases keep ``bulk_create``.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connection, models

from .models import Message


def insert(rows: Sequence[Message]) -> list[Message]:
    """Save ``rows`` (new messages) and return them with their ids, as bulk_create does."""
    if connection.vendor != "postgresql" or not rows:
        return Message.objects.bulk_create(rows)
    document = json.dumps([_row(message) for message in rows], separators=(",", ":"))
    with connection.cursor() as cursor:
        cursor.execute(_statement(), [document])
        ids = [pk for (pk,) in cursor.fetchall()]
    for message, pk in zip(rows, ids, strict=True):
        message.pk = pk
        message._state.adding = False
        message._state.db = connection.alias
    return list(rows)


def _fields() -> list[models.Field[Any, Any]]:
    return [f for f in Message._meta.concrete_fields if not f.primary_key]


@functools.cache
def _statement() -> str:
    quote = connection.ops.quote_name
    fields = _fields()
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


def _row(message: Message) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for field in _fields():
        value = getattr(message, field.attname)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, (bytes, bytearray, memoryview)):
            value = base64.b64encode(value).decode("ascii")
        row[field.column] = value
    return row
