"""Writing sent outcomes on PostgreSQL in a single round trip.

Outcomes are written after every message (``FLUSH_EVERY = 1``), so this write is on the send
path of every message: its cost is paid in round trips to the database far more than in
work. The general path (``recording.record``) takes five or six (BEGIN, a SET, the INSERT of
the attempts, the UPDATE of the messages, COMMIT). Here the common case, messages that were
simply sent, is one statement string:

    BEGIN; SET LOCAL synchronous_commit TO OFF;
    WITH attempt AS (INSERT INTO mailroom_attempt ...
                     SELECT ... FROM jsonb_to_recordset(<the attempts as one JSON document>)),
         moved AS (UPDATE mailroom_message SET status = 'sent', ... WHERE id = ANY(...)
                   AND claimed_by = <token> RETURNING id)
    SELECT (SELECT count(*) FROM attempt), (SELECT count(*) FROM moved); COMMIT

which Django's client-side binding cursor sends at once. The UPDATE is fenced on the claim
token exactly as in the general path.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from django.db import connection

from .columns import json_row, stored_fields
from .models import Attempt, Message, Status


def record_sent(
    attempts: Sequence[Attempt], ids: Sequence[int], *, token: str, now: datetime
) -> int:
    """Insert ``attempts`` and mark messages ``ids`` sent. Returns how many were moved."""
    params: dict[str, Any] = {
        "document": _document(attempts),
        "status": Status.SENT.value,
        "now": now,
        "ids": list(ids),
        "token": token,
    }
    inside = connection.in_atomic_block
    statement = _statement().format(**{name: f"%({name})s" for name in params})
    sql = statement if inside else f"BEGIN; {statement}; COMMIT"
    with connection.cursor() as cursor:
        try:
            cursor.execute(sql, params)
        except Exception:
            if not inside:
                # A failed statement leaves the explicit transaction aborted: end it, or
                # every later query on this connection would fail too.
                with contextlib.suppress(Exception):
                    cursor.execute("ROLLBACK")
            raise
        return _moved(cursor)


def sent_statement_params(
    values: dict[str, Any], message_id: int, token: str, now: datetime
) -> tuple[bytes, list[bytes | None]]:
    """The same write as :func:`record_sent` for one message, as libpq takes it: one
    statement, text params. On its own outside a transaction, it is its own transaction.
    ``values`` is the attempt by field (``recording.attempt_values``), each column of it bound
    as a parameter of its own: no JSON document for the client to encode and PostgreSQL to
    parse (jsonb_to_recordset), only the recipients column's.

    One message, and its id as a scalar rather than an array, because the statement is
    prepared: with ``id = ANY($4::bigint[])`` PostgreSQL plans it afresh at every execution
    (an array parameter's length is unknown to a generic plan, which then never looks cheaper
    than a custom one), which measured 384 microseconds against 128 with ``id = $4``, whose
    generic plan it keeps after the fifth.
    """
    params = [_text(values[name]) for name in _attnames()]
    params += [_SENT, now.isoformat().encode(), str(int(message_id)).encode(), token.encode()]
    return _libpq_statement(), params


_SENT = Status.SENT.value.encode()


def _str(value: str) -> bytes:
    if "\x00" in value:
        # libpq would cut a text parameter there; PostgreSQL's text refuses it anyway.
        raise ValueError("a NUL character cannot be stored in a text column")
    return value.encode()


#: A column value as PostgreSQL's text input of its column reads it (the parameters' types
#: are the columns', inferred from the INSERT), as the JSON document carried it before:
#: numbers as JSON writes them (repr, exact for a float), datetimes in ISO 8601.
_TEXT: dict[type, Callable[[Any], bytes]] = {
    str: _str,
    bool: lambda v: b"true" if v else b"false",
    int: lambda v: repr(v).encode(),
    float: lambda v: repr(v).encode(),
    datetime: lambda v: v.isoformat().encode(),
    dict: lambda v: _encode(v).encode(),
    list: lambda v: _encode(v).encode(),
}


def _text(value: Any) -> bytes | None:
    if value is None:
        return None
    convert = _TEXT.get(type(value))
    if convert is None:
        raise TypeError(f"no text form for a {type(value).__name__} column value")
    return convert(value)


@functools.cache
def _attnames() -> tuple[str, ...]:
    return tuple(f.attname for f in stored_fields(Attempt))


#: json.dumps with separators makes a new encoder at every call; this one is made once.
_encode: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":")).encode


def _document(attempts: Sequence[Attempt]) -> str:
    # The attempts travel as one JSON document that PostgreSQL unpacks with
    # jsonb_to_recordset: quoting one string costs far less than binding fifteen parameters
    # per attempt on the client, and the statement's text is the same for any batch size.
    return _encode([json_row(attempt) for attempt in attempts])


@functools.cache
def _statement() -> str:
    """The statement, with ``{name}`` fields for its parameters' placeholders."""
    quote = connection.ops.quote_name
    fields = stored_fields(Attempt)
    columns = ", ".join(quote(f.column) for f in fields)
    # PostgreSQL's own column types (varchar(n), jsonb...), so the recordset needs no casts.
    typed = ", ".join(f"{quote(f.column)} {f.db_type(connection)}" for f in fields)
    message = quote(Message._meta.db_table)
    template = (
        f"WITH attempt AS (INSERT INTO {quote(Attempt._meta.db_table)} ({columns}) "
        f"SELECT {columns} FROM jsonb_to_recordset({{document}}::jsonb) AS r({typed}) "
        "RETURNING 1), "
        f"moved AS (UPDATE {message} SET status = {{status}}, sent_at = {{now}}::timestamptz, "
        "last_attempt_at = {now}::timestamptz, attempts = attempts + 1, "
        "pending_recipients = '[]'::jsonb, reason = '', claimed_by = '', claimed_until = NULL "
        "WHERE id = ANY({ids}::bigint[]) AND claimed_by = {token} RETURNING 1) "
        # See recording._commit_without_waiting_for_disk for why the commit need not wait;
        # set_config(..., true) is SET LOCAL that a single statement can carry.
        "SELECT (SELECT count(*) FROM moved), "
        "set_config('synchronous_commit', 'off', true)"
    )
    # A literal % would be read as a placeholder by the client-side binding cursor.
    assert "%" not in template
    return template


@functools.cache
def _libpq_statement() -> bytes:
    """:func:`_statement` for one message, with the attempt's columns as parameters $1..$n
    (typed by the INSERT's columns, so no casts: a cast to varchar(n) would cut a long value
    where the INSERT refuses it) and the message's id a scalar."""
    fields = stored_fields(Attempt)
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    n = len(fields)
    insert = (
        f"INSERT INTO {quote(Attempt._meta.db_table)} ({columns}) "
        f"VALUES ({', '.join(f'${i}' for i in range(1, n + 1))}) RETURNING 1"
    )
    head, sep, rest = _statement().partition(") RETURNING 1), moved AS (")
    assert sep
    assert head.startswith("WITH attempt AS (INSERT")
    one = f"WITH attempt AS ({insert}), moved AS ({rest}".replace(
        "= ANY({ids}::bigint[])", "= {ids}::bigint"
    )
    assert "ANY(" not in one
    names = ("status", "now", "ids", "token")
    return one.format(**{name: f"${i}" for i, name in enumerate(names, n + 1)}).encode()


def _moved(cursor: Any) -> int:
    while True:
        if cursor.description is not None:
            count = cursor.fetchone()[0]
            return int(count)
        if not cursor.nextset():
            return 0
