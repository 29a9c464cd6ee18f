"""PostgreSQL: an outcome's write goes out at once; its acknowledgement is read at the barrier.

With ``FLUSH_EVERY = 1`` every outcome must be committed before the next message is committed
to its server (``batch``). On other databases a writer thread (``outcome_writer``) does the
write on a second connection meanwhile. On PostgreSQL with psycopg 3 no second thread is
needed: libpq can send a statement and collect its result later, so the delivery thread sends
the write of message *n* as soon as the server has taken it, goes on with the MAIL, RCPT and
DATA of message *n + 1* while PostgreSQL works, and reads the result just before that
message's bytes and final dot. The write and the SMTP exchange overlap as with a thread, without a
second connection, a thread hand-off per message, or two threads taking turns at the GIL.

Only the common outcome travels this way: a message simply sent (``recording_pg``'s single
statement, which commits on its own). Anything else waits for the write in flight and is
written the ordinary way. If the pipelined write fails, its outcomes are written again the
ordinary way, with the usual retries through a database outage; the UPDATE is fenced on the
claim token, so a write that did land before the failure moves nothing twice.
"""

from __future__ import annotations

import functools
import logging
import select
import weakref
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import DEFAULT_DB_ALIAS, connection, connections

from .recording import Outcome, attempt_values, finish, is_plain_sent, signal_attempts
from .recording_pg import sent_statement_params

if TYPE_CHECKING:
    from .batch import Batch

logger = logging.getLogger(__name__)


def available() -> bool:
    """Whether the default connection is PostgreSQL through psycopg 3, outside a transaction.

    psycopg2 has no handle on libpq's asynchronous calls; inside a transaction (a test's, or
    the caller's) the write must be part of it, so it cannot commit on its own.
    """
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return False
    connection.ensure_connection()
    return hasattr(connection.connection, "pgconn")


class _InFlight:
    def __init__(self, outcomes: list[Outcome], now: datetime) -> None:
        self.outcomes = outcomes
        self.now = now
        self.moved = 0


class PipelinedWriter:
    """The ``batch.OutcomeWriter`` interface, for PostgreSQL, on the calling thread."""

    def __init__(self, batch: Batch) -> None:
        self._batch = batch
        self._inflight: _InFlight | None = None
        self._committed: _InFlight | None = None
        # This thread's DatabaseWrapper itself: django.db.connection looks it up again (in a
        # context-local) at every attribute, several times per message. A batch, and so its
        # writer, lives on one thread; the wrapper stays the same through a reconnection.
        self._db = connections[DEFAULT_DB_ALIAS]

    def submit(self, outcome: Outcome) -> None:
        self.settle()
        self._finish()
        if not is_plain_sent(outcome):
            self._batch.write_now([outcome])
            return
        batch, db = self._batch, self._db
        values = attempt_values(outcome, worker=batch.worker, text_limit=batch.text_limit)
        now = batch.clock()
        try:
            sql, params = sent_statement_params(values, outcome.message.pk, batch.token, now)
            raw = db.connection
            prepared = _prepared(raw, sql)
            pgconn = raw.pgconn
            if prepared:
                pgconn.send_query_prepared(STATEMENT_NAME, params)
            else:
                pgconn.send_query_params(sql, params)
            _flush(pgconn)
            if db.queries_logged:
                # Invisible to Django's cursor wrappers, so logged here: query counts (tests,
                # the debug toolbar, assertNumQueries) must include these statements too.
                db.queries_log.append(
                    {
                        "sql": f"EXECUTE {STATEMENT_NAME.decode()} (sent without waiting)",
                        "time": "0",
                    }
                )
        except Exception as exc:
            logger.warning("mailroom: pipelined write not sent (%s); writing it directly", exc)
            self._batch.write_now([outcome])
            return
        self._inflight = _InFlight([outcome], now)

    def settle(self) -> None:
        """Read the result of the write in flight; write it again the ordinary way if it failed."""
        inflight, self._inflight = self._inflight, None
        if inflight is None:
            return
        raw = self._db.connection
        moved, error, sqlstate = _collect(raw.pgconn)
        if error is not None:
            if sqlstate == _NO_SUCH_STATEMENT:
                # The session that PREPAREd it is not this connection's any more: a pooler
                # in transaction mode (PgBouncer) hands each transaction whichever server
                # session is free. Prepared statements cannot be relied on here: from now on
                # the statement travels whole.
                _prepared_on[raw] = False
                logger.warning(
                    "mailroom: the prepared outcome statement is gone from this connection's "
                    "database session (a pooler in transaction mode?); writing this outcome "
                    "directly, and sending the statement whole from now on"
                )
            else:
                logger.warning("mailroom: pipelined write failed (%s); writing it directly", error)
            self._batch.write_now(inflight.outcomes)
            return
        inflight.moved = moved
        # Committed: that is all the barrier needs. The rest (signals, the rows in memory)
        # waits for tidy() or the next submit, which run while the server reads.
        self._committed = inflight

    def close(self) -> None:
        self.settle()
        self._finish()

    def tidy(self) -> None:
        self._finish()

    def _finish(self) -> None:
        done, self._committed = self._committed, None
        if done is not None:
            batch = self._batch
            # No Attempt was needed for the write; one is made only for message_sent's receivers.
            made = signal_attempts(done.outcomes, worker=batch.worker, text_limit=batch.text_limit)
            finish(done.outcomes, made, done.moved, now=done.now)
            batch.written.extend(done.outcomes)


#: The name of the prepared statement, per connection (psycopg's own are named ``_pg3_*``).
STATEMENT_NAME = b"mailroom_record_sent"

#: Connections (psycopg's) on which the statement is prepared, or could not be.
_prepared_on: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _prepared(raw: Any, sql: bytes) -> bool:
    """Prepare the statement on ``raw`` once; True if it is prepared there.

    Prepared, PostgreSQL parses and plans the statement once per connection instead of once
    per message. Where that fails, or where a later EXECUTE finds it gone (``settle``: a
    pooler in transaction mode hands each transaction another server session), the statement
    is sent whole every time instead.
    """
    known = _prepared_on.get(raw)
    if known is not None:
        return known
    try:
        # Through psycopg, which waits without holding the GIL.
        raw.execute(b"PREPARE " + STATEMENT_NAME + b" AS " + sql)
        ok = True
    except Exception as exc:
        logger.info("mailroom: cannot prepare the outcome statement: %s", exc)
        ok = False
    _prepared_on[raw] = ok
    return ok


def _flush(pgconn: Any) -> None:
    """Push the statement out. libpq is non-blocking under psycopg, and a blocking call into
    it would hold the GIL: any wait is a select(), which lets other threads run meanwhile."""
    while pgconn.flush() != 0:
        select.select([], [pgconn.socket], [])


#: SQLSTATE invalid_sql_statement_name: EXECUTE of a statement this session never prepared.
_NO_SUCH_STATEMENT = "26000"


def _collect(pgconn: Any) -> tuple[int, str | None, str | None]:
    """Drain every result of the statement in flight: (rows moved, error text or None, the
    error's SQLSTATE or None).

    The waits are select() calls, never a blocking libpq call: that would hold the GIL while
    PostgreSQL works, and a thread of this process whose transaction the statement waits for
    (a claim made ahead, a second delivery thread) could then never finish it.
    """
    pq = _pq()
    tuples_ok = pq.ExecStatus.TUPLES_OK
    moved, error, sqlstate = 0, None, None
    try:
        # PostgreSQL has usually answered by now (the SMTP exchange took longer than the
        # write): read what has arrived before asking select() whether more will.
        pgconn.consume_input()
        while True:
            while pgconn.is_busy():
                select.select([pgconn.socket], [], [])
                pgconn.consume_input()
            result = pgconn.get_result()
            if result is None:
                break
            if result.status == tuples_ok:
                value = result.get_value(0, 0)
                moved = int(value) if value is not None else 0
            else:
                message = result.error_message
                error = message.decode("utf-8", "replace").strip() if message else "failed"
                code = result.error_field(pq.DiagnosticField.SQLSTATE)
                sqlstate = code.decode("ascii", "replace") if code else None
    except Exception as exc:  # the connection broke under the statement
        error = str(exc) or type(exc).__name__
    return moved, error, sqlstate


@functools.cache
def _pq() -> Any:
    # psycopg is imported only where it is used: mailroom runs without it on other databases.
    from psycopg import pq

    return pq
