"""How a worker takes due messages. The differences between databases are hidden here.

A claim is a lease: the rows move to ``sending`` with the claimer's token and an expiry, in
one short transaction, and no transaction or row lock is held while a mail server is being
talked to. Recording an outcome is fenced on the token (see ``recording``), so a worker whose
lease ran out cannot overwrite what another worker did since.

- PostgreSQL: one statement, ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED
  LIMIT n) RETURNING ...``: concurrent claimers skip each other's rows instead of waiting, and
  the claimed rows come back without a second statement or a transaction around them.
- MySQL, MariaDB: ``SELECT ... FOR UPDATE SKIP LOCKED``, then an UPDATE of those ids, in one
  transaction (they cannot UPDATE ... WHERE id IN (SELECT ... LIMIT n)).
- SQLite (one host): a single ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING ...``
  statement, which SQLite runs atomically (a compare-and-set of the whole batch), then one read
  of the claimed rows' MIME bytes. (Before SQLite 3.35, which has no RETURNING: the same UPDATE,
  then a read of the token through the ORM.)

The rows come back with their content's MIME bytes (``row.content``, see
:mod:`mailroom.contents`) up to :data:`INLINE_MIME` bytes each, but not its ``payload``;
:mod:`mailroom.loading` reads the rest when it is needed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.db import connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import BinaryField, Case, F, Subquery, Value, When
from django.db.models.base import ModelState
from django.db.models.expressions import Col
from django.db.models.functions import Length
from django.db.models.signals import post_init, pre_init

from . import contents, logged_writer, pg_binary
from .models import Message, MessageContent, MessageQuerySet, Status

#: A claimed message's MIME bytes come with the claim up to this size. A bigger message's
#: are read only when it is about to be sent (read_mime) and let go once it is: a batch of
#: messages with large attachments, and the batch claimed ahead, would otherwise hold every
#: one of them in memory at once (a hundred 10 MB messages: a gigabyte per batch).
INLINE_MIME = 256 * 1024


def claim(
    *,
    token: str,
    now: datetime,
    limit: int,
    lease: float,
    exclude_backends: Collection[str] = (),
    due_before: datetime | None = None,
) -> list[Message]:
    """Take up to ``limit`` due messages (priority first, then oldest due) for ``token``.

    ``due_before`` bounds what counts as due (a one-shot run takes only what was due when it
    started, so a quick retry cannot keep it busy); it defaults to ``now``.
    """
    claimed_until = now + timedelta(seconds=lease)
    # The database the ORM claim would use (a locking read is a write for the router).
    alias = router.db_for_write(Message)
    connection = connections[alias]
    if connection.vendor == "postgresql":
        return _claim_returning(
            alias, token, due_before or now, claimed_until, limit, list(exclude_backends)
        )
    if connection.vendor == "sqlite" and _sqlite_returns(connection):
        return _claim_sqlite(
            alias, token, due_before or now, claimed_until, limit, list(exclude_backends)
        )
    candidates = Message.objects.due(due_before or now)
    if exclude_backends:
        candidates = candidates.exclude(backend__in=list(exclude_backends))
    if connection.features.has_select_for_update_skip_locked:
        return _claim_skip_locked(candidates, token, claimed_until, limit)
    return _claim_compare_and_set(candidates, token, claimed_until, limit)


def _claim_skip_locked(
    candidates: MessageQuerySet, token: str, claimed_until: datetime, limit: int
) -> list[Message]:
    with transaction.atomic():
        # Only the messages are locked where the database can say so (PostgreSQL cannot lock
        # the outer join's nullable side); MariaDB locks their contents too, which no one
        # else updates.
        of = ("self",) if candidates.db and _locks_of(candidates.db) else ()
        rows = list(_with_content(candidates.select_for_update(skip_locked=True, of=of))[:limit])
        if not rows:
            return []
        _inline_mime(rows)
        # MySQL cannot UPDATE ... WHERE id IN (SELECT ... LIMIT n), hence two statements;
        # the rows stay locked between them because both are in this transaction.
        Message.objects.filter(pk__in=[m.pk for m in rows]).update(
            status=Status.SENDING, claimed_by=token, claimed_until=claimed_until
        )
    for row in rows:
        row.status = Status.SENDING
        row.claimed_by = token
        row.claimed_until = claimed_until
    return rows


def _locks_of(alias: str) -> bool:
    return bool(connections[alias].features.has_select_for_update_of)


_Converter = Callable[[Any, Col, BaseDatabaseWrapper], Any]


@dataclass(frozen=True)
class _Returning:
    """A one-statement claim (PostgreSQL's, SQLite's), and how to turn what it returns into
    Messages.

    Worked out once per database alias: the SQL (names quoted from the model's ``_meta``), and
    for each returned column the converters the ORM would apply (JSON decoded...).
    """

    sql: str
    #: The same statement, also leaving out the backends given as an array parameter.
    sql_excluding: str
    #: The attnames of the returned columns of the message, in order: every concrete field.
    names: tuple[str, ...]
    #: (attname, converters, the column they are given), for the message's columns that have
    #: any.
    converters: tuple[tuple[str, tuple[_Converter, ...], Col], ...]
    #: The same for the content's MIME bytes, returned after them and after whether the
    #: message has a content row at all.
    mime_converters: tuple[_Converter, ...]
    mime_col: Col
    #: SQLite: the read of the claimed rows' MIME bytes (it cannot join to an UPDATE's rows).
    content_sql: str = ""


def _columns(alias: str) -> dict[str, Any]:
    """What both one-statement claims return and how the ORM would convert it: the message's
    attnames, in order (every concrete field), the converters of those that have any, and
    those of the content's MIME bytes, which come after them."""
    connection = connections[alias]
    meta = Message._meta

    def converters_of(col: Col) -> tuple[_Converter, ...]:
        # What SQLCompiler.get_converters finds for the column.
        return tuple(connection.ops.get_db_converters(col) + col.get_db_converters(connection))

    converters = []
    for field in meta.concrete_fields:
        col = field.get_col(meta.db_table)
        found = converters_of(col)
        if found:
            converters.append((field.attname, found, col))
    content = MessageContent._meta
    mime_col = content.get_field("mime").get_col(content.db_table)
    return {
        "names": tuple(f.attname for f in meta.concrete_fields),
        "converters": tuple(converters),
        "mime_converters": converters_of(mime_col),
        "mime_col": mime_col,
    }


def _sql_parts(alias: str) -> dict[str, str]:
    """The pieces both one-statement claims are made of, names quoted from the models' _meta."""
    quote = connections[alias].ops.quote_name
    meta, content = Message._meta, MessageContent._meta
    column = {f.name: quote(f.column) for f in meta.concrete_fields}
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    return {
        "update": f"UPDATE {table} SET {column['status']} = %s, {column['claimed_by']} = %s, "
        f"{column['claimed_until']} = %s WHERE {pk} IN (",
        # 'queued' is in the SQL rather than a parameter: on PostgreSQL the claim index is
        # partial on status = 'queued' (migration 0006), which a plan may use only where the
        # statement itself implies it, and a generic plan of a server-side prepared statement
        # (the server_side_binding and prepare_threshold options) would not know a
        # parameter's value.
        "due": f"SELECT {pk} FROM {table} WHERE {column['status']} = "
        f"'{Status.QUEUED.value}' AND {column['due_at']} <= %s",
        "order": f" ORDER BY {column['priority']}, {column['due_at']}, {pk} LIMIT %s",
        "returned": ", ".join(column[f.name] for f in meta.concrete_fields),
        "backend": column["backend"],
        "pk": pk,
        "content": quote(content.db_table),
        "mime": quote(content.get_field("mime").column),
        "link": quote(content.get_field("message").column),
    }


def _inline_mime_sql(mime: str, length: str) -> str:
    """The MIME bytes where they are INLINE_MIME or fewer (else NULL), then whether they are
    more; ``length`` is the database's function for a byte string's length."""
    limit = int(INLINE_MIME)
    return f"CASE WHEN {length}({mime}) <= {limit} THEN {mime} END, {length}({mime}) > {limit}"


@cache
def _returning(alias: str) -> _Returning:
    sql = _sql_parts(alias)
    update = "WITH claimed AS (" + sql["update"] + sql["due"]
    # The ORM's exclude(backend__in=...) of a NOT NULL column, as one array parameter.
    excluding = f" AND NOT ({sql['backend']} = ANY(%s))"
    # The content's MIME bytes come in the same round trip, joined to the claimed rows.
    link, mime = sql["link"], _inline_mime_sql(f"c.{sql['mime']}", "octet_length")
    tail = (
        f"{sql['order']} FOR UPDATE SKIP LOCKED) RETURNING {sql['returned']}) "
        f"SELECT claimed.*, c.{link} IS NOT NULL, {mime} "
        f"FROM claimed LEFT JOIN {sql['content']} c ON c.{link} = claimed.{sql['pk']}"
    )
    return _Returning(sql=update + tail, sql_excluding=update + excluding + tail, **_columns(alias))


def _claim_returning(
    alias: str,
    token: str,
    due_before: datetime,
    claimed_until: datetime,
    limit: int,
    exclude_backends: list[str],
) -> list[Message]:
    statement = _returning(alias)
    connection = connections[alias]
    excluded = exclude_backends or None  # an array parameter
    sql, params = _sql_params(
        connection, statement, token, due_before, claimed_until, limit, excluded
    )
    # One statement, so atomic without a transaction around it, in the query log
    # (assertNumQueries, the debug toolbar) like any ORM query. Through psycopg 3 its rows
    # come in binary: the MIME bytes as they are, not as hexadecimal text (pg_binary).
    data = pg_binary.fetchall(connection, sql, params)
    return _rows(alias, statement, data, token=token, claimed_until=claimed_until)


def _sql_params(
    connection: BaseDatabaseWrapper,
    statement: _Returning,
    token: str,
    due_before: datetime,
    claimed_until: datetime,
    limit: int,
    excluded: Any,
) -> tuple[str, list[Any]]:
    """A one-statement claim's SQL and parameters; ``excluded``, the backends to leave out as
    the statement takes them in one parameter, or None."""
    adapt = connection.ops.adapt_datetimefield_value
    params = [Status.SENDING.value, token, adapt(claimed_until), adapt(due_before)]
    if excluded is None:
        return statement.sql, [*params, limit]
    return statement.sql_excluding, [*params, excluded, limit]


def _sqlite_returns(connection: BaseDatabaseWrapper) -> bool:
    """Whether this SQLite has RETURNING (3.35, 2021)."""
    version: tuple[int, ...] = connection.Database.sqlite_version_info  # type: ignore[attr-defined]
    return version >= (3, 35, 0)


@cache
def _returning_sqlite(alias: str) -> _Returning:
    sql = _sql_parts(alias)
    # No status condition on the outer UPDATE, unlike PostgreSQL's: SQLite runs the whole
    # statement, subquery included, on one snapshot under its one write lock, so it is a
    # compare-and-set as it stands. And there one would cost the depth of the queue: without
    # the statistics of an ANALYZE (which nothing in a Django app runs) SQLite's planner
    # takes "status = 'queued'" for the better way in and walks every queued row of the claim
    # index, testing each against the hundred ids, where it otherwise fetches the hundred by
    # id (4.1 against 1.5 ms of CPU a claim of 100 at 10,000 queued; linear in the queue).
    update = sql["update"] + sql["due"]
    # The backends to leave out, as one parameter (a JSON array), as on PostgreSQL.
    excluding = f" AND {sql['backend']} NOT IN (SELECT value FROM json_each(%s))"
    tail = f"{sql['order']}) RETURNING {sql['returned']}"
    link = sql["link"]
    content_sql = (
        f"SELECT {link}, {_inline_mime_sql(sql['mime'], 'length')} FROM {sql['content']} "
        f"WHERE {link} IN (SELECT value FROM json_each(%s))"
    )
    return _Returning(
        sql=update + tail,
        sql_excluding=update + excluding + tail,
        content_sql=content_sql,
        **_columns(alias),
    )


def _claim_sqlite(
    alias: str,
    token: str,
    due_before: datetime,
    claimed_until: datetime,
    limit: int,
    exclude_backends: list[str],
) -> list[Message]:
    """The UPDATE ... RETURNING, then the MIME bytes of what it took: two statements, as the
    ORM's compare-and-set, with rows made as PostgreSQL's are instead of by the ORM. (With the
    plan above, a claimed row took 93-101 us of CPU at 10,000 queued, against 184-209.)"""
    statement = _returning_sqlite(alias)
    connection = connections[alias]
    excluded = json.dumps(exclude_backends) if exclude_backends else None  # a JSON array
    sql, params = _sql_params(
        connection, statement, token, due_before, claimed_until, limit, excluded
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        returned = cursor.fetchall()
        if not returned:
            return []
        at = statement.names.index(Message._meta.pk.attname)
        cursor.execute(statement.content_sql, [json.dumps([r[at] for r in returned])])
        stored = {link: (mime, big) for link, mime, big in cursor.fetchall()}
    data = [(*r, r[at] in stored, *stored.get(r[at], (None, None))) for r in returned]
    return _rows(alias, statement, data, token=token, claimed_until=claimed_until)


def _rows(
    alias: str,
    statement: _Returning,
    data: Sequence[Sequence[Any]],
    *,
    token: str,
    claimed_until: datetime,
) -> list[Message]:
    """Messages from the returned rows, their values converted as the ORM converts them, in
    the order the claim took them."""
    connection = connections[alias]
    # The lease as the ORM path leaves it on its rows: the very objects it was given.
    lease = {"status": Status.SENDING, "claimed_by": token, "claimed_until": claimed_until}
    make = _instance if _plain() else _from_db
    rows = []
    for *returned, stored, mime, big in data:
        values = dict(zip(statement.names, returned, strict=True))
        for name, convs, col in statement.converters:
            value = values[name]
            for convert in convs:
                value = convert(value, col, connection)
            values[name] = value
        values.update(lease)
        row = make(alias, statement, values)
        for convert in statement.mime_converters:
            mime = convert(mime, statement.mime_col, connection)
        # No content row (mailroom always writes one; a row inserted by hand may lack it):
        # left uncached, so that using it says so (contents.of).
        if stored:
            # A bigger message's bytes stay deferred, for read_mime.
            contents.attach_stored(row, {} if big else {"mime": mime})
        rows.append(row)
    # RETURNING gives no order: sort as the subquery did (id makes the key unique).
    rows.sort(key=lambda m: (m.priority, m.due_at, m.pk))
    return rows


def _plain() -> bool:
    """Whether nobody listens to Message's pre_init/post_init (then __init__ may be skipped)."""
    return not (pre_init.has_listeners(Message) or post_init.has_listeners(Message))


def _instance(alias: str, statement: _Returning, values: dict[str, Any]) -> Message:
    """What ``from_db`` makes, without ``Model.__init__``'s walk over every field (8 of the 32
    µs of CPU a claimed row cost with it): each value set in ``__dict__`` as __init__ sets it
    (Message has no descriptor that does more). Checked attribute by attribute against the
    ORM's rows in tests/integration/test_claim.py."""
    row = Message.__new__(Message)
    state = ModelState()
    state.adding = False
    state.db = alias
    row.__dict__["_state"] = state
    row.__dict__.update(values)
    return row


def _from_db(alias: str, statement: _Returning, values: dict[str, Any]) -> Message:
    """The ORM's own way, for when a pre_init/post_init listener must see every row."""
    return Message.from_db(alias, statement.names, list(values.values()))


def _claim_compare_and_set(
    candidates: MessageQuerySet, token: str, claimed_until: datetime, limit: int
) -> list[Message]:
    ids = Subquery(candidates.values("pk")[:limit])
    outer = Message.objects.filter(pk__in=ids)
    if connections[candidates.db].vendor != "sqlite":
        # The status condition is repeated in the outer UPDATE so that the statement is a true
        # compare-and-set even if another process changed a row since the subquery's plan
        # began. (SQLite's is one already, and there it costs a walk of the whole queue:
        # _returning_sqlite.)
        outer = outer.filter(status=Status.QUEUED)
    claimed = outer.update(status=Status.SENDING, claimed_by=token, claimed_until=claimed_until)
    if not claimed:
        return []
    rows = list(
        _with_content(Message.objects.filter(claimed_by=token, status=Status.SENDING)).order_by(
            "priority", "due_at", "id"
        )
    )
    _inline_mime(rows)
    for row in rows:
        row.status = Status.SENDING  # as every other claim leaves it (not the str read back)
    return rows


def _with_content(rows: MessageQuerySet) -> MessageQuerySet:
    """``rows`` with their content joined: its MIME bytes up to INLINE_MIME (as the
    annotation ``_mailroom_mime``, with their size as ``_mailroom_mime_size``), its payload
    left unread."""
    size = Length("content__mime")
    return (
        rows.select_related("content")
        .defer("content__payload", "content__mime")
        .annotate(
            _mailroom_mime_size=size,
            _mailroom_mime=Case(
                When(_mailroom_mime_size__lte=INLINE_MIME, then=F("content__mime")),
                default=Value(None),
                output_field=BinaryField(null=True),
            ),
        )
    )


def _inline_mime(rows: Sequence[Message]) -> None:
    """Move each row's annotated MIME bytes into its content (bytes up to INLINE_MIME, or None
    where it has none); a bigger message's stay deferred, for read_mime."""
    for row in rows:
        values = row.__dict__
        size, mime = values.pop("_mailroom_mime_size"), values.pop("_mailroom_mime")
        content = contents.attached(row)
        if content is None:
            continue
        if size is None:
            content.__dict__["mime"] = None
        elif size <= INLINE_MIME:
            content.__dict__["mime"] = bytes(mime)


def release(ids: Collection[int], *, token: str) -> int:
    """Put claimed but unattempted messages back in the queue, uncharged."""
    if not ids:
        return 0
    return Message.objects.filter(pk__in=list(ids), claimed_by=token, status=Status.SENDING).update(
        status=Status.QUEUED, claimed_by="", claimed_until=None
    )


def reclaim_expired(now: datetime) -> int:
    """Return messages whose lease ran out (their worker died) to the queue.

    Whether such a message reached its server is unknown, so it will be sent again: the
    at-least-once window. Its pinned Message-ID lets receivers drop the duplicate. On SQLite,
    the sends such a worker noted in its outcome log are written down first and not sent again
    (``logged_writer.recover``).
    """
    held = logged_writer.recover(now)
    if held is None:  # the outcome log is busy: its notes may cover any of them
        return 0
    expired = Message.objects.lease_expired(now)
    if held:
        expired = expired.exclude(pk__in=held)
    return expired.update(
        status=Status.QUEUED,
        claimed_by="",
        claimed_until=None,
        reason="requeued: the worker's lease expired before it recorded an outcome",
    )
