"""A model's stored columns, and one row of them as JSON, for mailroom's hand-written SQL.

The fast write paths (``recording_pg``, ``recording_plain``, ``inserting``) build their
statements from the model rather than from column lists of their own, so that a field added
to a model cannot be forgotten by one of them.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from django.db import models


def stored_fields(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    """The fields an INSERT writes: every concrete one but the auto primary key."""
    return [f for f in model._meta.concrete_fields if not f.primary_key]


def json_row(instance: models.Model) -> dict[str, Any]:
    """``instance``'s stored values by column, as JSON that PostgreSQL's jsonb_to_recordset
    reads back into the column types: datetimes as ISO 8601 with their offset, bytes as
    base64 (the statement decodes them)."""
    row: dict[str, Any] = {}
    for field in stored_fields(type(instance)):
        value = getattr(instance, field.attname)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, (bytes, bytearray, memoryview)):
            value = base64.b64encode(value).decode("ascii")
        row[field.column] = value
    return row


def insert_statement(model: type[models.Model], connection: Any, *, returning: bool) -> str:
    """``INSERT INTO <table> (<stored columns>) VALUES (%s, ...)`` for one row of ``model``,
    names quoted for ``connection``, with ``RETURNING <pk>`` if ``returning``."""
    quote = connection.ops.quote_name
    fields = stored_fields(model)
    columns = ", ".join(quote(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({marks})"
    pk = model._meta.pk
    if returning and pk is not None:
        sql += f" RETURNING {quote(pk.column)}"
    return sql
