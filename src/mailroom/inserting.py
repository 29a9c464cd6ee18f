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
- PostgreSQL through psycopg 3, one row: ``INSERT ... RETURNING`` with its values bound on
  the server instead of quoted into the statement by the client.
- MySQL/MariaDB, and a single row with psycopg2: ``bulk_create``.

Each message's content (:class:`~mailroom.models.MessageContent`, attached to its row by
:func:`mailroom.contents.attach`) is written with it, in the same transaction (one statement
for a single message on PostgreSQL): a message is never stored without what it says.

Rows may come :class:`Unfinished`: their content (the payload, the MIME bytes), the costly
part, is made just before each is written. A big COPY makes it while it streams, so that the
client builds the next rows while the server stores the last ones (two CPUs, half the time
each); every other path makes them all first.
"""

from __future__ import annotations

import base64
import functools
import json
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, overload

from django.db import connection, models, transaction

from . import contents
from .columns import insert_statement, json_row, stored_fields
from .models import Message, MessageContent
from .preparing import preparer


class Unfinished(Sequence[Message]):
    """New rows whose last fields ``finish(position)`` fills in, just before the row is written.

    ``finish`` returns False to leave that row out, or raises to refuse the whole insert: then
    nothing is stored and the caller's transaction is still usable. It may set only fields
    that do not decide how rows are written (not the dates).
    """

    def __init__(self, rows: list[Message], finish: Callable[[int], bool]) -> None:
        self.rows = rows
        self.finish = finish

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, index: int) -> Message: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Message]: ...
    def __getitem__(self, index: int | slice) -> Message | Sequence[Message]:
        return self.rows[index]

    def finished(self) -> list[Message]:
        """Every row finished now, in order, those finish left out dropped."""
        return [row for position, row in enumerate(self.rows) if self.finish(position)]


#: From how many rows a COPY makes unfinished rows while it streams. Below, the whole COPY
#: fits in few of psycopg's 32 KB sends, so there is little to overlap, and inside the
#: caller's transaction the savepoint that streaming needs (two more round trips) could cost
#: more than it saves. The value is a cautious guess, not a measured break-even.
_STREAM_FROM = 100


def insert(rows: Sequence[Message]) -> list[Message]:
    """Save ``rows`` (new messages) and return them with their ids, as bulk_create does.

    Every row must have its content attached (:func:`mailroom.contents.attach`), or, if
    ``rows`` is :class:`Unfinished`, get it from its finish; the rows finish left out are not
    returned.
    """
    if isinstance(rows, Unfinished) and not _streams(rows):
        rows = rows.finished()
    if not rows:
        return []
    # One row on PostgreSQL too: a plain INSERT is planned in a fraction of the time the
    # JSON document's INSERT ... SELECT takes (measured: 320-520 against 600-680 us of the
    # server's CPU per call), and COPY would take a second round trip for the id. The
    # message and its content are one statement, atomic on its own.
    if connection.vendor == "postgresql" and len(rows) == 1 and _is_psycopg3():
        return _insert_bound(rows[0])
    # Otherwise the messages and their contents are written by two statements (or more),
    # which stand or fall together: in a transaction of their own in autocommit, else in the
    # caller's, as bulk_create does (a failed write leaves it to be rolled back). Only while a
    # COPY streams can a finish refuse the call half-way (an invalid message): there a
    # savepoint leaves the caller's transaction usable, since PostgreSQL aborts a
    # transaction whose statement failed.
    streaming = isinstance(rows, Unfinished)
    with transaction.atomic(savepoint=streaming):
        if connection.vendor == "sqlite" and connection.features.can_return_rows_from_bulk_insert:
            created = _insert_sqlite(Message, rows, returning=True)
            _insert_sqlite(MessageContent, _contents(created), returning=False)
            _saved_contents(created)
            return created
        if connection.vendor != "postgresql" or len(rows) == 1:
            return _bulk_create(rows)
        # From two rows on COPY is faster than the JSON document (measured: 10 rows 1.2 ms
        # against 1.9, 200 rows 13 ms against 30).
        if _copyable(rows):
            return _insert_copy(rows)
        return _insert_json(rows)


def _contents(rows: Sequence[Message]) -> list[MessageContent]:
    """The content attached to each of the saved ``rows``, made to belong to it."""
    found: list[MessageContent] = []
    for row in rows:
        content = contents.attached(row)
        if content is None:
            raise ValueError(
                "a new message needs its content: mailroom.contents.attach(row, payload, mime)"
            )
        content.message_id = row.pk
        found.append(content)
    return found


def _saved_contents(rows: Sequence[Message]) -> None:
    alias = connection.alias  # looked up once: each lookup goes through a context-local
    for row in rows:
        content = contents.attached(row)
        assert content is not None
        content.message_id = row.pk
        content._state.adding = False
        content._state.db = alias


def _bulk_create(rows: Sequence[Message]) -> list[Message]:
    """Django's ``bulk_create``, for the messages then for their contents."""
    if connection.features.can_return_rows_from_bulk_insert:
        created = Message.objects.bulk_create(rows)
    else:
        # MySQL tells no ids from a bulk insert, and a content needs its message's.
        for row in rows:
            row.save(force_insert=True)
        created = list(rows)
    MessageContent.objects.bulk_create(_contents(created))
    _saved_contents(created)
    return created


def _streams(rows: Unfinished) -> bool:
    """Whether ``rows`` go through a COPY that finishes them as it streams."""
    return connection.vendor == "postgresql" and len(rows) >= _STREAM_FROM and _copyable(rows)


def _insert_json(rows: Sequence[Message]) -> list[Message]:
    """The messages, then their contents, as JSON documents (in the caller's atomic block)."""
    documents = _documents([json.dumps(json_row(m), separators=(",", ":")) for m in rows])
    ids: list[int] = []
    with connection.cursor() as c:
        for document in documents:
            c.execute(_statement(), [document])
            ids.extend(pk for (pk,) in c.fetchall())
        created = _saved(rows, ids)
        own = [_content_json(content) for content in _contents(created)]
        for document in _documents(own):
            c.execute(_content_statement(), [document])
    _saved_contents(created)
    return created


def _content_json(content: MessageContent) -> str:
    mime = content.mime
    return json.dumps(
        {
            "message_id": content.message_id,
            "payload": content.payload,
            "mime": None if mime is None else base64.b64encode(mime).decode("ascii"),
        },
        separators=(",", ":"),
    )


@functools.cache
def _content_statement() -> str:
    quote = connection.ops.quote_name
    meta = MessageContent._meta
    # The message's id, payload, mime: in the model's order.
    link, payload, mime = (quote(f.column) for f in _all_fields(MessageContent))
    return (
        f"INSERT INTO {quote(meta.db_table)} ({link}, {payload}, {mime}) "
        f"SELECT r.message_id, r.payload, decode(r.mime, 'base64') "
        f"FROM jsonb_to_recordset(%s::jsonb) AS r(message_id bigint, payload jsonb, mime text)"
    )


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
    alias = connection.alias
    for message, pk in zip(rows, ids, strict=True):
        message.pk = pk
        message._state.adding = False
        message._state.db = alias
    return list(rows)


def _insert_bound(row: Message) -> list[Message]:
    """One row on PostgreSQL through psycopg 3: ``INSERT ... RETURNING`` with its values bound
    on the server.

    Django's cursors bind on the client: every value is quoted into the statement's text in
    Python, the stored MIME bytes escaped byte by byte, and PostgreSQL then parses all of it.
    Here the same values (prepared by the fields, as Django prepares them) travel as
    parameters, the bytes as they are. Measured, one message per call and transaction, three
    alternating pairs: 617-690 against 424-476 microseconds of the caller's CPU per call, and
    1.4-2.1 against 0.85-1.15 ms per call (PostgreSQL parses less too). The statement is the
    caller's connection's, in the caller's transaction, and it is logged as Django logs its own.
    """
    import psycopg  # only where psycopg 3 is the driver (_is_psycopg3)

    content = contents.attached(row)
    if content is None:
        _contents([row])  # raises: the row has no content
    assert content is not None
    values = row.__dict__
    params = [prepare(values[name]) for name, prepare in _bound_preparers()]
    params += [prepare(getattr(content, name)) for name, prepare in _bound_content_preparers()]
    sql = _bound_insert()
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params)
        fetched = cursor.fetchone()
    assert fetched is not None
    if connection.queries_logged:
        connection.queries_log.append({"sql": sql, "time": "0"})
    created = _saved([row], [fetched[0]])
    _saved_contents(created)
    return created


@functools.cache
def _bound_insert() -> str:
    """The message's INSERT and its content's, one statement: the content's VALUES take the
    new id from the first (a data-modifying WITH runs once, whoever reads it)."""
    quote = connection.ops.quote_name
    meta = MessageContent._meta
    link = quote(meta.get_field("message").column)
    columns = ", ".join(quote(f.column) for f in _content_fields())
    marks = ", ".join(["%s"] * len(_content_fields()))
    return (
        f"WITH m AS ({insert_statement(Message, connection, returning=True)}) "
        f"INSERT INTO {quote(meta.db_table)} ({link}, {columns}) "
        f"VALUES ((SELECT * FROM m), {marks}) RETURNING {link}"
    )


@functools.cache
def _bound_preparers() -> list[tuple[str, Callable[[Any], Any]]]:
    return [(f.attname, preparer(f)) for f in stored_fields(Message)]


def _content_fields() -> list[models.Field[Any, Any]]:
    """The content's columns but the message's id: what enqueue makes (payload, mime)."""
    return stored_fields(MessageContent)


@functools.cache
def _bound_content_preparers() -> list[tuple[str, Callable[[Any], Any]]]:
    return [(f.attname, preparer(f)) for f in _content_fields()]


#: SQLite's limit on parameters in one statement since 3.32 (Django assumes the older 999).
_SQLITE_MAX_PARAMS = 32766


def _insert_sqlite(model: type[models.Model], rows: Sequence[Any], *, returning: bool) -> list[Any]:
    """A multi-row INSERT of ``rows`` of ``model``: the messages (``returning`` their ids,
    which they are given) or their contents (whose id, their message's, is theirs already)."""
    fields = stored_fields(model) if returning else list(model._meta.concrete_fields)
    first = rows[0]
    # A value every row shares is prepared once: a call's messages have the same status,
    # priority, dates and counters, and differ in a handful of fields.
    shared: dict[str, Any] = {}
    others = rows[1:]
    for field in fields:
        value = getattr(first, field.attname)
        if all(getattr(row, field.attname) == value for row in others):
            shared[field.attname] = preparer(field)(value)
    # The others through each field's preparer, in the fields' order.
    own = [(f.attname, preparer(f)) for f in fields if f.attname not in shared]
    per_statement = max(1, _SQLITE_MAX_PARAMS // len(fields))
    ids: list[int] = []
    # Several statements stand or fall together: insert() calls this in an atomic block.
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            params: list[Any] = []
            for row in chunk:
                values = row.__dict__
                prepared = {name: prepare(values[name]) for name, prepare in own}
                params.extend(
                    shared[f.attname] if f.attname in shared else prepared[f.attname]
                    for f in fields
                )
            sql = _sqlite_statement(model, returning, len(chunk))
            cursor.execute(sql, params)
            if not returning:
                continue
            # Ids grow in insertion order (AUTOINCREMENT); sorting them does not rely on the
            # order RETURNING happens to emit them in.
            ids.extend(sorted(pk for (pk,) in cursor.fetchall()))
    if not returning:
        return list(rows)
    return _saved(rows, ids)


@functools.lru_cache(maxsize=32)
def _sqlite_statement(model: type[models.Model], returning: bool, count: int) -> str:
    """The multi-row INSERT of ``count`` rows of ``model`` (the messages, ``returning`` their
    ids; or their contents, with their message's id)."""
    quote = connection.ops.quote_name
    fields = stored_fields(model) if returning else list(model._meta.concrete_fields)
    columns = ", ".join(quote(f.column) for f in fields)
    row_marks = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES "
    sql += ", ".join([row_marks] * count)
    if returning:
        pk = model._meta.pk
        assert pk is not None
        sql += f" RETURNING {quote(pk.column)}"
    return sql


def _copyable(rows: Sequence[Message]) -> bool:
    """Whether ``rows`` can go through COPY and be stored exactly as the JSON path stores them."""
    if not _is_psycopg3() or not _copy_typed():
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
    """Two binary COPYs: the contents, made as they stream, then their messages.

    The ids are taken first, so the contents can name their messages before these are in:
    the foreign key is checked at commit (Django makes every PostgreSQL foreign key
    DEFERRABLE INITIALLY DEFERRED). Contents first, because a finish may leave a row out.
    """
    with connection.cursor() as cursor:
        ids = _take_ids(cursor, len(rows))
        finish = rows.finish if isinstance(rows, Unfinished) else None
        written: list[Message] = []

        def stored() -> Iterator[tuple[Any, ...]]:
            for position, row in enumerate(rows):
                if finish is not None and not finish(position):
                    continue
                content = contents.attached(row)
                if content is None:
                    _contents([row])  # raises: the row has no content
                assert content is not None
                yield (ids[len(written)], content.payload, content.mime)
                written.append(row)

        _copy(cursor, MessageContent, list(_all_fields(MessageContent)), stored())
        # The ids were taken in order, one per row: those written take the first ones, still
        # in input order (a row left out leaves a gap at the end, as a rolled-back insert
        # would).
        mine = ids[: len(written)]
        values = operator.attrgetter(*(f.attname for f in stored_fields(Message)))
        pk = Message._meta.pk
        assert pk is not None
        _copy(
            cursor,
            Message,
            [pk, *stored_fields(Message)],
            ((pk_value, *values(row)) for pk_value, row in zip(mine, written, strict=True)),
        )
    created = _saved(written, mine)
    _saved_contents(created)
    return created


def _take_ids(cursor: Any, count: int) -> list[int]:
    pk = Message._meta.pk
    assert pk is not None
    # The sequence's values are taken ahead, one per row: whatever other sessions take
    # meanwhile, these are ours, and sorted they follow the input as RETURNING's would.
    cursor.execute(
        "WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence(%s, %s) AS seq) "
        "SELECT nextval(s.seq) FROM s, generate_series(1, %s)",
        [Message._meta.db_table, pk.column, count],
    )
    return sorted(pk_value for (pk_value,) in cursor.fetchall())


def _copy(
    cursor: Any,
    model: type[models.Model],
    fields: list[models.Field[Any, Any]],
    rows: Iterable[tuple[Any, ...]],
) -> None:
    """COPY ``rows`` (values of ``fields``, in order) into ``model``'s table."""
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = ", ".join(quote(f.column) for f in fields)
    count = 0
    # One COPY statement, however many rows, with no size limit (only each value has).
    # psycopg sends every 32 KB it has formatted, so the server stores rows while the next
    # ones are finished and formatted.
    with (
        connection.wrap_database_errors,
        cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types(_copy_types(model, tuple(fields)))
        for row in rows:
            copy.write_row(row)
            count += 1
    if connection.queries_logged:
        # Made on psycopg's own cursor, so Django's wrappers do not see it: logged here, so
        # that query counts (tests, the debug toolbar, assertNumQueries) include it.
        connection.queries_log.append(
            {"sql": f"COPY {table} FROM STDIN ({count} rows)", "time": "0"}
        )


def _copy_typed() -> bool:
    """Whether psycopg knows every type of both tables' columns."""
    pk = Message._meta.pk
    assert pk is not None
    messages = _copy_types(Message, (pk, *stored_fields(Message)))
    return (
        messages is not None
        and _copy_types(MessageContent, _all_fields(MessageContent)) is not None
    )


def _all_fields(model: type[models.Model]) -> tuple[models.Field[Any, Any], ...]:
    return tuple(model._meta.concrete_fields)


@functools.cache
def _copy_types(
    model: type[models.Model], fields: tuple[models.Field[Any, Any], ...]
) -> list[str] | None:
    """The PostgreSQL types of ``fields``, as psycopg names them, or None if one has no name
    psycopg knows (binary COPY must be told every column's type)."""
    from psycopg.postgres import types

    names: list[str] = []
    for field in fields:
        # "varchar(16)" -> "varchar": the binary form does not depend on the modifier. (A
        # foreign key's type is its target's: "bigint".)
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
