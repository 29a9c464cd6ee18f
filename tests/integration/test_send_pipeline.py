"""The overlapped send path, outside any transaction, as ``mailroom send`` and the worker run it.

Outcomes are written while the next message goes (PostgreSQL: sent without waiting and read at
the barrier; elsewhere: a writer thread), a sent message's bookkeeping runs while the server
reads the next MAIL FROM, and the next batch is claimed while one is delivered. None of that may
loosen the guarantee: when the server is handed a message, every message it took before is
already recorded.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.db import connection
from django.test.utils import CaptureQueriesContext

import mailroom
from mailroom import outcome_log, pipelined, recording_pg
from mailroom.batch import Batch
from mailroom.models import Attempt, Message, Status
from mailroom.worker import Engine, RunStats

pytestmark = pytest.mark.django_db(transaction=True)


def queue(n: int, *, refused_every: int = 0) -> None:
    mailroom.enqueue_many(
        EmailMessage(
            f"S{i}",
            "B",
            "app@example.com",
            [
                f"refused{i}@example.com"
                if refused_every and i % refused_every == 0
                else f"u{i}@x.org"
            ],
        )
        for i in range(1, n + 1)
    )


def noted_in_outcome_log() -> set[int]:
    """The messages noted in SQLite's outcome log (``outcome_log``), recorded as well as if
    they were marked sent: a dead worker's notes are written down before its lease returns
    its messages to the queue."""
    if connection.vendor != "sqlite" or not outcome_log.exists(connection.settings_dict["NAME"]):
        return set()
    path = outcome_log.for_database(connection.settings_dict["NAME"]).path
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {message for (message,) in db.execute("SELECT message FROM sent")}


#: On SQLite in a rollback journal (the test database's), both ways of making each outcome
#: durable before the next dot: a note in the outcome log (the default), or a commit to the
#: database per message on the writer thread.
SQLITE_WRITES = ["outcome-log", "commit-per-message"] if connection.vendor == "sqlite" else [""]


@pytest.fixture(params=SQLITE_WRITES)
def writes(request: pytest.FixtureRequest, settings: Any) -> str:
    if request.param == "commit-per-message":
        settings.MAILROOM = {**settings.MAILROOM, "SQLITE_OUTCOME_LOG": False}
    return str(request.param)


class RecordedAtEachDot:
    """A DATA rule that looks at the database as each message's final dot arrives."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.seen: list[tuple[int, int]] = []  # (messages the server took before, sent in the DB)
        self.lock = threading.Lock()

    def __call__(self, _message: Any, _attempt: int) -> None:
        # The server answers from an event loop, where Django refuses to query: a thread of
        # its own (with its own connection: committed rows only), waited for before replying.
        taken = self.server.count
        counted: list[int] = []

        def count() -> None:
            try:
                sent = set(Message.objects.filter(status=Status.SENT).values_list("pk", flat=True))
                counted.append(len(sent | noted_in_outcome_log()))
            finally:
                connection.close()

        thread = threading.Thread(target=count)
        thread.start()
        thread.join()
        with self.lock:
            self.seen.append((taken, counted[0]))


@pytest.fixture
def slow_writes(monkeypatch) -> None:
    """Every outcome's write takes 20 ms to commit, so a missing barrier cannot go unseen."""
    real_params = pipelined.sent_statement_params

    def sleepy_statement(*args: Any) -> tuple[bytes, list[bytes | None]]:
        sql, params = real_params(*args)
        slow = sql.replace(b"'off', true)", b"'off', true), pg_sleep(0.02)")
        assert slow != sql, "the statement no longer ends as this fixture expects"
        return slow, params

    monkeypatch.setattr(pipelined, "sent_statement_params", sleepy_statement)
    monkeypatch.setattr(pipelined, "_prepared", lambda raw, sql: False)
    real_write = Batch.write_now

    def sleepy_write(self: Batch, outcomes: list[Any]) -> None:
        time.sleep(0.02)  # on the writer thread, while the delivery thread goes on
        real_write(self, outcomes)

    monkeypatch.setattr(Batch, "write_now", sleepy_write)


OFFERS_PIPELINING = pytest.mark.parametrize(
    "offers_pipelining", [False, True], ids=["lockstep", "smtp-pipelining"]
)


@OFFERS_PIPELINING
def test_every_message_taken_is_recorded_before_the_next_is_handed_over(
    queue_to_smtp, writes, slow_writes, offers_pipelining
) -> None:
    server = queue_to_smtp
    # With RFC 2920 pipelining the server has the next message's MAIL, RCPT and DATA at
    # once: the write must still be done before its body goes out.
    server.script.pipelining = offers_pipelining
    queue(100)
    observer = RecordedAtEachDot(server)
    server.script.data = observer

    stats = Engine(batch_size=40).send_due()

    assert stats.sent == 100
    assert stats.batches == 3
    assert len(observer.seen) == 100
    behind = [(taken, sent) for taken, sent in observer.seen if sent < taken]
    assert not behind, f"messages taken but not yet recorded at a later dot: {behind[:5]}"
    assert Message.objects.filter(status=Status.SENT).count() == 100
    assert Attempt.objects.count() == 100
    assert not server.duplicate_message_ids()
    assert server.pipelined == (100 if offers_pipelining else 0)
    # Each batch's messages after its first had their envelopes sent with the dot before:
    # the barrier holds for them too (their bytes wait for it, not their envelopes).
    assert server.chained == (39 + 39 + 19 if offers_pipelining else 0)


@OFFERS_PIPELINING
def test_refusals_between_sends_keep_their_own_outcomes(queue_to_smtp, offers_pipelining) -> None:
    server = queue_to_smtp
    server.script.pipelining = offers_pipelining
    queue(60, refused_every=7)
    for i in range(7, 61, 7):
        server.script.rcpt[f"refused{i}@example.com"] = "550 5.1.1 No such user"

    Engine(batch_size=25).send_due()

    failed = Message.objects.filter(status=Status.FAILED)
    assert sorted(m.subject for m in failed) == sorted(f"S{i}" for i in range(7, 61, 7))
    assert all("No such user" in m.reason for m in failed)
    assert Message.objects.filter(status=Status.SENT).count() == 60 - failed.count()
    assert Attempt.objects.count() == 60
    assert server.count == 60 - failed.count()


def test_a_batch_claimed_ahead_goes_back_when_the_run_ends(queue_to_smtp) -> None:
    queue(30)
    engine = Engine(batch_size=10)
    stats = RunStats()
    with engine.running():
        assert engine.run_batch(stats) == 10  # and the next 10 are claimed meanwhile
    assert Message.objects.filter(status=Status.SENT).count() == 10
    assert Message.objects.filter(status=Status.QUEUED, claimed_by="").count() == 20
    assert not Message.objects.filter(status=Status.SENDING).exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the pipelined write is PostgreSQL's")
def test_a_failed_pipelined_write_is_written_the_ordinary_way(
    queue_to_smtp, monkeypatch, caplog
) -> None:
    queue(5)
    real = pipelined.sent_statement_params

    def broken(*args: Any) -> tuple[bytes, list[bytes | None]]:
        _, params = real(*args)
        return b"SELECT no_such_column FROM mailroom_message WHERE $1::text IS NULL", params[:1]

    monkeypatch.setattr(pipelined, "sent_statement_params", broken)
    monkeypatch.setattr(pipelined, "_prepared", lambda raw, sql: False)

    stats = Engine().send_due()

    assert stats.sent == 5
    assert Message.objects.filter(status=Status.SENT).count() == 5
    assert Attempt.objects.count() == 5
    assert "writing it directly" in caplog.text


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the pipelined write is PostgreSQL's")
def test_a_prepared_write_gone_from_the_session_is_sent_whole_from_then_on(
    queue_to_smtp, caplog
) -> None:
    """Behind a pooler in transaction mode (PgBouncer) each transaction gets whichever server
    session is free: the one that ran PREPARE may not be the one that runs EXECUTE. Here the
    statement is prepared and then DEALLOCATEd on the worker's own session, the state such a
    switch leaves: one write fails and is written the ordinary way, the rest go whole."""
    queue(12)
    connection.ensure_connection()
    raw = connection.connection
    assert pipelined._prepared(raw, recording_pg._libpq_statement())
    with connection.cursor() as cursor:
        cursor.execute(f"DEALLOCATE {pipelined.STATEMENT_NAME.decode()}")

    with CaptureQueriesContext(connection) as queries:
        stats = Engine(batch_size=12).send_due()

    assert stats.sent == 12
    assert Message.objects.filter(status=Status.SENT).count() == 12
    assert Attempt.objects.count() == 12
    assert not queue_to_smtp.duplicate_message_ids()
    gone = [r for r in caplog.records if "prepared outcome statement is gone" in r.getMessage()]
    assert len(gone) == 1, caplog.text
    assert "pipelined write failed" not in caplog.text
    # The other eleven were still written without waiting, as whole statements.
    assert sum("sent without waiting" in q["sql"] for q in queries.captured_queries) == 12
    assert pipelined._prepared_on[raw] is False


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the pipelined write is PostgreSQL's")
def test_writes_sent_without_waiting_are_counted_as_queries(queue_to_smtp) -> None:
    """One statement per message, in Django's query log like any other (assertNumQueries,
    the debug toolbar and the benchmark's count see them)."""

    def queries_for(size: int) -> int:
        Message.objects.all().delete()
        queue(size)
        with CaptureQueriesContext(connection) as queries:
            assert Engine(batch_size=size).run_batch(RunStats()) == size
        assert Message.objects.filter(status=Status.SENT).count() == size
        return sum("sent without waiting" in q["sql"] for q in queries.captured_queries)

    assert queries_for(10) == 10
    assert queries_for(30) == 30


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the pipelined write is PostgreSQL's")
def test_the_prepared_write_is_planned_once_not_at_every_message(queue_to_smtp) -> None:
    """PostgreSQL plans a prepared statement afresh at each execution unless a generic plan
    looks as cheap; an array of ids never does. Planning was a fifth of its CPU per message."""
    queue(30)
    with connection.cursor() as cursor:
        # A table of some size, as a queue in use has: on a handful of rows, where any plan
        # costs next to nothing, even the array's generic plan would win.
        cursor.execute(
            "INSERT INTO mailroom_message (status, priority, backend, created_at, due_at, "
            "attempts, message_id, subject, from_email, recipients, refused_recipients, "
            "reason, claimed_by) SELECT 'sent', priority, backend, created_at, "
            "due_at, attempts, message_id || g, subject, from_email, recipients, "
            "refused_recipients, reason, claimed_by FROM mailroom_message, "
            "generate_series(1, 200) g"
        )
        cursor.execute("ANALYZE mailroom_message")
    assert Engine(batch_size=30).send_due().sent == 30
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = %s",
            [pipelined.STATEMENT_NAME.decode()],
        )
        generic, custom = cursor.fetchone()
    assert custom <= 5, "planned per message"
    assert generic + custom == 30


def test_message_sent_receivers_get_each_attempt_as_stored(queue_to_smtp) -> None:
    """The pipelined write sends the attempt as JSON without making an Attempt; one is made
    for the signal when something listens, and it is the row that was stored."""
    from mailroom import signals
    from mailroom.columns import json_row, stored_fields

    queue(4)
    got: list[Attempt] = []
    signals.message_sent.connect(
        lambda sender, attempt, **kw: got.append(attempt),
        sender=Message,
        weak=False,
        dispatch_uid="test-sent",
    )
    try:
        assert Engine().send_due().sent == 4
    finally:
        signals.message_sent.disconnect(sender=Message, dispatch_uid="test-sent")
    stored = {a.message_id: a for a in Attempt.objects.all()}
    assert sorted(a.message_id for a in got) == sorted(stored)
    columns = {f.column for f in stored_fields(Attempt)}
    for attempt in got:
        row, saved = json_row(attempt), json_row(stored[attempt.message_id])
        assert set(row) == columns
        assert row == saved


def test_without_receivers_the_fast_writes_make_no_attempt_instance(
    queue_to_smtp, monkeypatch
) -> None:
    from mailroom import recording

    queue(3)
    made: list[object] = []
    real = recording._attempt
    monkeypatch.setattr(recording, "_attempt", lambda *a, **k: made.append(1) or real(*a, **k))
    assert Engine().send_due().sent == 3
    assert Attempt.objects.filter(verdict="sent").count() == 3
    # MySQL/MariaDB's write inserts Attempts; PostgreSQL's and SQLite's take the values.
    assert len(made) == (3 if connection.vendor == "mysql" else 0)
