"""Writing sent outcomes on SQLite straight through the ``sqlite3`` connection.

By default every sent message's outcome is its own transaction, written while the next
message is on its way, and it must be committed before that message's final dot (the barrier,
see ``docs/explanation.md``). On SQLite the write runs in this process, so its Python costs
the delivery thread as much as SQLite's own work: through Django's atomic block and cursor
wrappers (and the rewriting of every statement's ``%s`` into ``?``) it cost about 250
microseconds of CPU per message on the benchmark machine, as much again as SQLite and the
file system. Here the same two statements as ``recording_plain``, with the same values
(prepared by the fields, as Django prepares them), go to ``sqlite3`` directly: ``BEGIN
IMMEDIATE``, the INSERT of the attempts, the UPDATE fenced on the claim token, ``COMMIT``;
for several batches at once (the group commit of ``outcome_writer``), the two statements of
each between one BEGIN and one COMMIT.
(Inside a transaction the write is ``recording_plain``'s, with its savepoint.) Errors come out
as Django's; the statements are logged in Django's query log when queries
are logged, as Django would log them.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from .columns import stored_fields
from .models import Attempt, Message
from .recording_plain import attempt_rows, insert_sql, mark_sent_statement, record_sent_plain


def record_sent(
    attempts: Sequence[Attempt | Mapping[str, Any]],
    ids: Sequence[int],
    *,
    token: str,
    now: datetime,
) -> int:
    """Insert ``attempts`` (Attempts, or their values by field) and mark messages ``ids``
    sent. Returns how many were moved."""
    if connections[DEFAULT_DB_ALIAS].in_atomic_block:
        # Inside a transaction (a test's, a caller's) the write needs a savepoint of its own,
        # as the atomic block gives it: that is recording_plain's way.
        return record_sent_plain(attempts, ids, token=token, now=now)
    return record_sent_many([(attempts, ids, token)], now=now)[0]


#: One batch's part of a write: its attempts, the ids of its messages, its claim token.
Write = tuple[Sequence[Attempt | Mapping[str, Any]], Sequence[int], str]


def record_sent_many(writes: Sequence[Write], *, now: datetime) -> list[int]:
    """:func:`record_sent` for several batches (``writes``), in one transaction, outside any
    other. Returns how many messages each one moved."""
    # This thread's DatabaseWrapper itself: ``connection`` looks it up again (in a
    # context-local) at every attribute, and the fields preparing the values ask it for its
    # operations and features a dozen times per row.
    db = connections[DEFAULT_DB_ALIAS]
    assert not db.in_atomic_block
    statements = []
    for attempts, ids, token in writes:
        update, params = mark_sent_statement(ids, token=token, now=now, db=db)
        # The same values, in the same order, with sqlite3's placeholder.
        statements.append((attempt_rows(attempts), _qmarks(update), params))
    db.ensure_connection()
    raw = db.connection
    moved = []
    with db.wrap_database_errors, _immediate(raw):
        for rows, update, params in statements:
            raw.executemany(_insert(), rows)
            moved.append(int(raw.execute(update, params).rowcount))
    if db.queries_logged:
        db.queries_log.append({"sql": "BEGIN IMMEDIATE", "time": "0"})
        for _rows, update, _params in statements:
            db.queries_log.extend({"sql": sql, "time": "0"} for sql in (_insert(), update))
        db.queries_log.append({"sql": "COMMIT", "time": "0"})
    return moved


def record_noted(
    attempts: Sequence[Mapping[str, Any]], ids: Sequence[int], *, token: str, now: datetime
) -> tuple[list[int], int]:
    """Write the sends an outcome log noted for claim ``token`` (``logged_writer``): messages
    ``ids``, each with its attempt's values. Returns the ids this call moved to sent, and how
    many attempts it recorded (theirs, and those of others not recorded yet).

    Two writers may hold the same notes at once: the batch that made them, at its end, and the
    recovery of its lease, if the lease ran out meanwhile. Neither waits for the other; instead
    each write is one IMMEDIATE transaction (SQLite's write lock: no other writer between its
    reads and its writes) that moves only the messages ``token`` still holds, with their
    attempts. A message it does not hold was moved on already (by the other writer, or back to
    the queue): its attempt is inserted only if that message has no attempt with the same start
    and worker yet. So each send is moved once and its attempt recorded once, whoever is first.
    """
    db = connections[DEFAULT_DB_ALIAS]
    assert not db.in_atomic_block
    by_id = dict(zip(ids, attempt_rows(attempts), strict=True))
    claims_sql = _noted_queries(len(ids))[0]
    done = ["BEGIN IMMEDIATE", claims_sql]  # the statements run, for Django's query log
    db.ensure_connection()
    raw = db.connection
    with db.wrap_database_errors, _immediate(raw):
        # Each message that still exists, and who holds it.
        claims = dict(raw.execute(claims_sql, ids).fetchall())
        held = [pk for pk in ids if claims.get(pk) == token]
        rows = [by_id[pk] for pk in held]
        others = [pk for pk in ids if pk in claims and claims[pk] != token]
        if others:
            recorded_sql = _noted_queries(len(others))[1]
            recorded = set(raw.execute(recorded_sql, others))
            rows += _not_recorded([by_id[pk] for pk in others], recorded)
            done.append(recorded_sql)
        if rows:
            raw.executemany(_insert(), rows)
            done.append(_insert())
        if held:
            update, params = mark_sent_statement(held, token=token, now=now, db=db)
            raw.execute(_qmarks(update), params)
            done.append(_qmarks(update))
    if db.queries_logged:
        db.queries_log.extend({"sql": sql, "time": "0"} for sql in [*done, "COMMIT"])
    return held, len(rows)


@contextlib.contextmanager
def _immediate(raw: Any) -> Iterator[None]:
    """One IMMEDIATE transaction on ``raw`` (the ``sqlite3`` connection, which Django keeps in
    autocommit): committed when the block ends, rolled back if it raises."""
    raw.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise
    raw.execute("COMMIT")


def _not_recorded(
    rows: list[tuple[Any, ...]], recorded: set[tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    """The attempt ``rows`` whose (message, start, worker) is not among ``recorded``."""
    message, started, worker = _identity_positions()
    return [r for r in rows if (r[message], r[started], r[worker]) not in recorded]


@functools.lru_cache(maxsize=64)
def _noted_queries(count: int) -> tuple[str, str]:
    """For ``count`` messages: those that exist, with their claim token; their attempts'
    (message, start, worker)."""
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    messages, attempts = quote(Message._meta.db_table), quote(Attempt._meta.db_table)
    marks = ", ".join("?" * count)
    return (
        f"SELECT id, claimed_by FROM {messages} WHERE id IN ({marks})",
        # The start as stored, text, as the attempt rows hold it: Django's connection would
        # make a datetime of the bare column.
        f"SELECT message_id, CAST(started_at AS TEXT), worker FROM {attempts} "
        f"WHERE message_id IN ({marks})",
    )


@functools.cache
def _identity_positions() -> tuple[int, int, int]:
    """Where an attempt row (``attempt_rows``) holds its message, start and worker."""
    names = [f.attname for f in stored_fields(Attempt)]
    return names.index("message_id"), names.index("started_at"), names.index("worker")


@functools.cache
def _insert() -> str:
    return _qmarks(insert_sql())


def _qmarks(sql: str) -> str:
    # sqlite3's placeholder; the statements hold no literal %.
    return sql.replace("%s", "?")
