"""Rows from PostgreSQL in binary format, their values as Django's own cursors give them.

Django's psycopg 3 cursors bind on the client, which returns every column as text: a bytea
column comes as hexadecimal, twice its size, which PostgreSQL encodes and psycopg decodes. The
claim returns each message's MIME bytes, so that is twice a 1 MiB attachment's bytes per
message made, sent and parsed. Measured with 100 such rows: 587 ms as text, 209 ms in binary.

In binary the values are psycopg's defaults, except where Django registers loaders of its own
(text format only): ``jsonb`` stays the JSON text (JSONField decodes it with its decoder) and
``timestamptz`` is given the connection's time zone. Those two are matched here, and
``tests/integration/test_claim.py`` checks the claimed rows attribute by attribute against the
ORM's.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper


def usable(connection: BaseDatabaseWrapper) -> bool:
    """Whether ``connection`` is PostgreSQL through psycopg 3."""
    if connection.vendor != "postgresql":
        return False
    try:
        import psycopg
    except ImportError:  # psycopg2 only
        return False
    connection.ensure_connection()
    return isinstance(connection.connection, psycopg.Connection)


def fetchall(connection: BaseDatabaseWrapper, sql: str, params: Sequence[Any]) -> list[Any]:
    """Run ``sql`` (``%s`` placeholders) on ``connection`` and return its rows: read in binary
    where it is PostgreSQL through psycopg 3, through a Django cursor elsewhere.

    The statement runs on the caller's connection, in its transaction, and is logged as Django
    logs its own queries (assertNumQueries and the debug toolbar count it).
    """
    if not usable(connection):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
    import psycopg

    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        adapters = cursor.adapters
        adapters.register_loader("jsonb", _loaders()[0])
        adapters.register_loader("timestamptz", _tz_loader(connection.timezone))
        cursor.execute(sql, params, binary=True)
        rows = cursor.fetchall()
    if connection.queries_logged:
        # As Django logs a statement: with its parameters in it.
        logged = connection.ops.compose_sql(sql, params)  # type: ignore[attr-defined]
        connection.queries_log.append({"sql": logged, "time": "0"})
    return rows


@functools.cache
def _loaders() -> tuple[type, ...]:
    from psycopg.adapt import Loader
    from psycopg.pq import Format

    class JsonbText(Loader):
        """jsonb's binary form (a version byte, then the text) as the JSON text."""

        format = Format.BINARY

        def load(self, data: Any) -> str:
            return bytes(data[1:]).decode()

    return (JsonbText,)


@functools.cache
def _tz_loader(zone: tzinfo | None) -> type:
    from psycopg.types.datetime import TimestamptzBinaryLoader

    class InZone(TimestamptzBinaryLoader):
        """What Django's text loader gives: the instant, in the connection's time zone."""

        def load(self, data: Any) -> datetime:
            return super().load(data).replace(tzinfo=zone)

    return InZone
