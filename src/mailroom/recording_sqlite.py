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

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from .models import Attempt
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
        statements.append((attempt_rows(attempts, db), _qmarks(update), params))
    db.ensure_connection()
    raw = db.connection
    moved = []
    with db.wrap_database_errors:
        try:
            raw.execute("BEGIN IMMEDIATE")
            for rows, update, params in statements:
                raw.executemany(_insert(), rows)
                moved.append(int(raw.execute(update, params).rowcount))
            raw.execute("COMMIT")
        except BaseException:
            if raw.in_transaction:
                raw.execute("ROLLBACK")
            raise
    if db.queries_logged:
        db.queries_log.append({"sql": "BEGIN IMMEDIATE", "time": "0"})
        for _rows, update, _params in statements:
            db.queries_log.extend({"sql": sql, "time": "0"} for sql in (_insert(), update))
        db.queries_log.append({"sql": "COMMIT", "time": "0"})
    return moved


@functools.cache
def _insert() -> str:
    return _qmarks(insert_sql())


def _qmarks(sql: str) -> str:
    # sqlite3's placeholder; the statements hold no literal %.
    return sql.replace("%s", "?")
