"""SQLite in a rollback journal: sends noted in the outcome log beside the database, written to
the database once per batch (``outcome_log``, ``logged_writer``), and the recovery of what a dead
worker noted. The test database is a file in SQLite's default journal (DELETE)."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import threading
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.db import OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import mailroom
from mailroom import logged_writer, outcome_log, recording_sqlite, signals
from mailroom.batch import with_db_retry
from mailroom.claiming import claim, reclaim_expired
from mailroom.models import Attempt, Message, Status
from mailroom.worker import Engine, RunStats

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "sqlite", reason="the outcome log is SQLite's"),
]


def database() -> str:
    return str(connection.settings_dict["NAME"])


@pytest.fixture(autouse=True)
def fresh_log() -> Any:
    """Each test starts and ends without a log file (the test database's name is reused)."""

    def remove() -> None:
        log = outcome_log.for_database(database())
        log.close()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(log.path + suffix)

    remove()
    yield
    remove()


def notes() -> list[tuple[str, int]]:
    path = outcome_log.for_database(database()).path
    if not os.path.isfile(path):
        return []
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [(t, int(m)) for t, m in db.execute("SELECT token, message FROM sent ORDER BY 2")]


def queue(n: int) -> list[Message]:
    return mailroom.enqueue_many(
        EmailMessage(f"S{i}", "B", "app@example.com", [f"u{i}@x.org"]) for i in range(n)
    )


#: When the dead worker's sends started (one moment for all: a note is matched by it).
STARTED = timezone.now() - timedelta(minutes=10)


def noted_attempt(message: Message, *, worker: str = "dead-worker") -> dict[str, Any]:
    return {
        "message_id": message.pk,
        "started_at": STARTED,
        "duration": 0.012,
        "backend": message.backend,
        "worker": worker,
        "verdict": "sent",
        "charged": True,
        "code": 250,
        "enhanced_code": "2.0.0",
        "error_type": "",
        "error_text": "",
        "reason": "",
        "recipients": {message.recipients[0]: {"state": "sent"}},
        "esp_message_id": "",
    }


def died_with_notes(n: int, noted: int, *, lease_left: float = -60) -> list[Message]:
    """``n`` messages claimed by a worker that noted the first ``noted`` as sent, then died;
    its lease ends ``lease_left`` seconds from now (in the past by default)."""
    queue(n)
    rows = claim(token="dead:1", now=timezone.now(), limit=n, lease=300)
    Message.objects.filter(pk__in=[r.pk for r in rows]).update(
        claimed_until=timezone.now() + timedelta(seconds=lease_left)
    )
    log = outcome_log.for_database(database())
    for row in rows[:noted]:
        log.append("dead:1", row.pk, noted_attempt(row))
    return rows


class NotedAtEachDot:
    """A DATA rule that looks at the log and the database as each message's final dot arrives
    (on a thread of its own: the server's event loop may not query)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []  # (noted, marked sent in the database)

    def __call__(self, _message: Any, _attempt: int) -> None:
        def look() -> None:
            try:
                sent = Message.objects.filter(status=Status.SENT).count()
                self.seen.append((len(notes()), sent))
            finally:
                connection.close()

        thread = threading.Thread(target=look)
        thread.start()
        thread.join()


def test_each_send_is_noted_before_the_next_dot_and_written_once_per_batch(
    queue_to_smtp, monkeypatch
) -> None:
    writes: list[int] = []
    real = recording_sqlite.record_noted
    monkeypatch.setattr(
        recording_sqlite,
        "record_noted",
        lambda attempts, ids, **kw: writes.append(len(ids)) or real(attempts, ids, **kw),
    )
    observer = NotedAtEachDot()
    queue_to_smtp.script.data = observer
    queue(25)

    stats = Engine(batch_size=10).send_due()

    assert stats.sent == 25
    # At each dot, every earlier message of the batch is noted, none yet written down.
    assert observer.seen[:10] == [(i, 0) for i in range(10)]
    assert observer.seen[10:12] == [(0, 10), (1, 10)]
    assert writes == [10, 10, 5], "one database write per batch"
    assert Message.objects.filter(status=Status.SENT, claimed_by="").count() == 25
    attempts = Attempt.objects.order_by("message_id")
    assert [a.recipients for a in attempts] == [
        {f"u{i}@x.org": {"state": "sent"}} for i in range(25)
    ]
    assert notes() == [], "the notes are dropped once written down"


def test_only_plain_sends_are_noted_a_refusal_is_written_at_once(queue_to_smtp) -> None:
    queue_to_smtp.script.rcpt["u2@x.org"] = "550 5.1.1 No such user"
    observer = NotedAtEachDot()
    queue_to_smtp.script.data = observer
    queue(4)

    Engine(batch_size=4).send_due()

    failed = Message.objects.get(status=Status.FAILED)
    assert failed.subject == "S2"
    assert "No such user" in failed.reason
    assert Message.objects.filter(status=Status.SENT).count() == 3
    # u2 never reached DATA; its failure was in the database before the next dot.
    assert observer.seen == [(0, 0), (1, 0), (2, 0)]


def test_a_dead_workers_notes_are_written_down_not_sent_again(queue_to_smtp) -> None:
    received: list[Any] = []
    signals.message_sent.connect(lambda **kw: received.append(kw), weak=False, dispatch_uid="t")
    try:
        rows = died_with_notes(5, noted=3)
        stats = Engine(batch_size=10).send_due()
    finally:
        signals.message_sent.disconnect(dispatch_uid="t")

    # The three it noted are recorded from the log; the two it did not are sent now.
    assert stats.sent == 2
    assert sorted(queue_to_smtp.message_ids()) == sorted(r.message_id for r in rows[3:])
    assert Message.objects.filter(status=Status.SENT).count() == 5
    recovered = Attempt.objects.filter(worker="dead-worker").order_by("message_id")
    assert [a.message_id for a in recovered] == [r.pk for r in rows[:3]]
    assert recovered[0].recipients == {"u0@x.org": {"state": "sent"}}
    assert recovered[0].enhanced_code == "2.0.0"
    assert Attempt.objects.count() == 5
    assert {kw["message"].pk for kw in received} == {r.pk for r in rows}
    assert notes() == []


def test_the_notes_of_a_claim_still_alive_are_left_to_its_batch() -> None:
    rows = died_with_notes(3, noted=2, lease_left=120)
    assert logged_writer.recover(timezone.now()) == frozenset()
    assert reclaim_expired(timezone.now()) == 0
    assert notes() == [("dead:1", rows[0].pk), ("dead:1", rows[1].pk)]
    assert Message.objects.filter(status=Status.SENDING).count() == 3
    assert not Attempt.objects.exists()


def test_notes_already_written_down_are_dropped_without_a_second_attempt() -> None:
    # The worker wrote its batch down, as at a batch's end, and died before it dropped the
    # notes.
    rows = died_with_notes(2, noted=2)
    recording_sqlite.record_sent(
        [noted_attempt(r) for r in rows], [r.pk for r in rows], token="dead:1", now=timezone.now()
    )
    assert logged_writer.recover(timezone.now()) == frozenset()
    assert notes() == []
    assert Attempt.objects.count() == 2


def test_a_noted_send_requeued_without_its_note_still_gets_its_attempt() -> None:
    # The lease was taken back while the log could not be read: the messages went back to
    # the queue (to be sent again) and another worker has them now.
    rows = died_with_notes(2, noted=2)
    Message.objects.filter(pk__in=[r.pk for r in rows]).update(claimed_by="other:1")
    assert logged_writer.recover(timezone.now()) == frozenset()
    assert notes() == []
    recorded = Attempt.objects.filter(worker="dead-worker", started_at=STARTED)
    assert sorted(recorded.values_list("message_id", flat=True)) == [r.pk for r in rows]
    # History only: the messages are left to the worker that has them.
    assert set(Message.objects.values_list("claimed_by", flat=True)) == {"other:1"}


def test_a_busy_log_holds_every_expired_lease_back_until_the_next_round(monkeypatch) -> None:
    monkeypatch.setattr(outcome_log, "BUSY_TIMEOUT", 0.2)
    rows = died_with_notes(3, noted=2)
    path = outcome_log.for_database(database()).path
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # another process recovering notes
        assert reclaim_expired(timezone.now()) == 0
        assert Message.objects.filter(status=Status.SENDING).count() == 3
        other.execute("COMMIT")
    assert reclaim_expired(timezone.now()) == 1  # the one not noted
    assert Message.objects.filter(status=Status.SENT).count() == 2
    assert Message.objects.get(pk=rows[2].pk).status == Status.QUEUED


def test_inside_a_transaction_noted_messages_are_held_back() -> None:
    rows = died_with_notes(3, noted=2)
    with transaction.atomic():
        assert reclaim_expired(timezone.now()) == 1
    assert [Message.objects.get(pk=r.pk).status for r in rows] == [
        Status.SENDING,
        Status.SENDING,
        Status.QUEUED,
    ]
    assert len(notes()) == 2
    # Outside one, they are written down.
    reclaim_expired(timezone.now())
    assert Message.objects.filter(status=Status.SENT).count() == 2


def test_an_unreadable_note_is_reported_and_its_message_sent_again(caplog) -> None:
    rows = died_with_notes(2, noted=2)
    with contextlib.closing(sqlite3.connect(outcome_log.for_database(database()).path)) as db:
        db.execute("UPDATE sent SET attempt = '{not json' WHERE message = ?", (rows[0].pk,))
        db.commit()

    with caplog.at_level(logging.ERROR, logger="mailroom.logged_writer"):
        assert reclaim_expired(timezone.now()) == 1

    assert f"message {rows[0].pk} (claim dead:1)" in caplog.text
    assert Message.objects.get(pk=rows[0].pk).status == Status.QUEUED
    assert Message.objects.get(pk=rows[1].pk).status == Status.SENT
    assert notes() == []


def test_a_batch_that_lost_its_lease_writes_only_what_recovery_left(queue_to_smtp) -> None:
    """A batch still at work when its lease ran out: another worker's recovery writes down what
    it noted so far; the batch, at its end, writes only the rest. One attempt per send."""
    recovered: list[int] = []

    def recover_midway(message: Any, _attempt: int) -> None:
        if message.subject != "S3":
            return

        def expire_and_recover() -> None:
            try:
                Message.objects.filter(status=Status.SENDING).update(
                    claimed_until=timezone.now() - timedelta(seconds=1)
                )
                logged_writer.recover(timezone.now())
                recovered.append(Message.objects.filter(status=Status.SENT).count())
            finally:
                connection.close()

        thread = threading.Thread(target=expire_and_recover)
        thread.start()
        thread.join()

    queue_to_smtp.script.data = recover_midway
    queue(6)
    signalled: list[int] = []
    signals.message_sent.connect(
        lambda **kw: signalled.append(kw["message"].pk), weak=False, dispatch_uid="lost"
    )
    try:
        Engine(batch_size=6).send_due()
    finally:
        signals.message_sent.disconnect(dispatch_uid="lost")

    assert recovered == [3]  # S0, S1, S2 were noted when S3's dot came
    # One message_sent per message: from the recovery for S0..S2, from the batch for the rest.
    assert sorted(signalled) == sorted(Message.objects.values_list("pk", flat=True))
    # The batch wrote S3..S5 itself, and not S0..S2 a second time.
    assert Message.objects.filter(status=Status.SENT).count() == 6
    assert sorted(Attempt.objects.values_list("message__subject", flat=True)) == [
        f"S{i}" for i in range(6)
    ]
    assert notes() == []


def test_with_the_log_off_each_send_is_committed_to_the_database(queue_to_smtp, settings) -> None:
    settings.MAILROOM = {**settings.MAILROOM, "SQLITE_OUTCOME_LOG": False}
    observer = NotedAtEachDot()
    queue_to_smtp.script.data = observer
    queue(3)

    assert Engine(batch_size=3).send_due().sent == 3

    assert observer.seen == [(0, 0), (0, 1), (0, 2)]
    assert not outcome_log.exists(database())


def test_in_wal_mode_the_database_takes_each_send_itself(queue_to_smtp) -> None:
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode = WAL")
    try:
        observer = NotedAtEachDot()
        queue_to_smtp.script.data = observer
        queue(3)
        assert Engine(batch_size=3).send_due().sent == 3
    finally:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode = DELETE")
    assert observer.seen == [(0, 0), (0, 1), (0, 2)]
    assert not outcome_log.exists(database())


def test_the_database_takes_a_batch_in_the_same_queries_whatever_its_size(
    queue_to_smtp, monkeypatch
) -> None:
    """The count the benchmark reports: the database's queries for one batch are the same for
    10 messages as for 200; the per-message write is the note, one per message sent."""
    noted: list[int] = []
    real = outcome_log.OutcomeLog.append
    monkeypatch.setattr(
        outcome_log.OutcomeLog,
        "append",
        lambda log, token, message, attempt: (
            noted.append(message) or real(log, token, message, attempt)
        ),
    )

    def one_batch(size: int) -> int:
        noted.clear()
        queue(size)
        with CaptureQueriesContext(connection) as queries:
            assert Engine(batch_size=size).run_batch(RunStats()) == size
        assert len(noted) == size
        return len(queries)

    assert one_batch(10) == one_batch(200)
    assert Message.objects.filter(status=Status.SENT).count() == 210
    assert notes() == []


def test_a_log_that_cannot_be_opened_leaves_each_write_to_the_database(
    queue_to_smtp, caplog
) -> None:
    # A directory where the log's file should be: SQLite cannot open it.
    path = outcome_log.for_database(database()).path
    os.mkdir(path)
    try:
        observer = NotedAtEachDot()
        queue_to_smtp.script.data = observer
        queue(3)
        with caplog.at_level(logging.WARNING, logger="mailroom.logged_writer"):
            assert Engine(batch_size=3).send_due().sent == 3
    finally:
        os.rmdir(path)
    # Each outcome in the database before the next dot, as with the log off; said once.
    assert observer.seen == [(0, 0), (0, 1), (0, 2)]
    assert caplog.text.count("writing each outcome to the database") == 1
    assert Attempt.objects.count() == 3


def test_if_the_log_fails_at_the_batchs_end_the_sends_are_written_and_recovery_drops_the_notes(
    queue_to_smtp, monkeypatch, caplog
) -> None:
    def broken(self: Any, token: str, messages: list[int]) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    # The one stand-in here: a log whose file fails between the notes and the batch's end.
    with monkeypatch.context() as patched:
        patched.setattr(outcome_log.OutcomeLog, "drop", broken)
        queue(4)
        with caplog.at_level(logging.WARNING, logger="mailroom.logged_writer"):
            assert Engine(batch_size=4).send_due().sent == 4
    assert "disk I/O error" in caplog.text
    assert Message.objects.filter(status=Status.SENT, claimed_by="").count() == 4
    assert len(notes()) == 4
    # Their messages moved on: recovery drops them, recording nothing twice.
    assert logged_writer.recover(timezone.now()) == frozenset()
    assert notes() == []
    assert Attempt.objects.count() == 4


def test_a_run_closes_its_threads_connection_to_the_log(queue_to_smtp) -> None:
    queue(3)
    log = outcome_log.for_database(database())
    assert Engine(batch_size=3).send_due().sent == 3
    # Closed when the run ends (the -wal file goes with the last connection).
    assert getattr(log._local, "db", None) is None
    assert not os.path.exists(log.path + "-wal")


def test_a_log_busy_at_the_batchs_end_does_not_stop_it_writing_its_sends(
    queue_to_smtp, monkeypatch
) -> None:
    """Held by another process past BUSY_TIMEOUT when the batch ends: the batch writes its sends
    to the database all the same (that needs no lock of the log's) and leaves the notes, which
    the lease's recovery drops later, recording nothing twice."""
    monkeypatch.setattr(outcome_log, "BUSY_TIMEOUT", 0.2)
    path = outcome_log.for_database(database()).path
    held: list[sqlite3.Connection] = []

    def take_the_log(message: Any, _attempt: int) -> None:
        if message.subject == "S2":
            other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            other.execute("BEGIN IMMEDIATE")
            held.append(other)

    queue_to_smtp.script.data = take_the_log
    queue(3)
    assert Engine(batch_size=3).send_due().sent == 3
    # S2's own note could not be made: it went to the database directly; S0 and S1 were
    # written at the batch's end, their notes left.
    assert Message.objects.filter(status=Status.SENT, claimed_by="").count() == 3
    assert len(notes()) == 2
    held[0].execute("COMMIT")
    held[0].close()

    assert logged_writer.recover(timezone.now()) == frozenset()
    assert notes() == []
    assert Attempt.objects.count() == 3


def test_other_senders_go_on_noting_while_a_batch_writes_the_database(
    queue_to_smtp, monkeypatch
) -> None:
    """The batch's write does not hold the log: while it waits for the database (another
    connection holds the database's write lock), another sender's note goes in at once."""
    monkeypatch.setattr(outcome_log, "BUSY_TIMEOUT", 1.0)
    writing, taken = threading.Event(), threading.Event()
    real = recording_sqlite.record_noted

    def record_noted(*args: Any, **kwargs: Any) -> Any:
        writing.set()
        return real(*args, **kwargs)

    monkeypatch.setattr(recording_sqlite, "record_noted", record_noted)
    seen: list[str] = []

    def hold_the_database() -> None:
        with contextlib.closing(sqlite3.connect(database(), isolation_level=None)) as db:
            db.execute("BEGIN IMMEDIATE")
            taken.set()
            if not writing.wait(3):
                seen.append("the batch never wrote")
            time.sleep(0.1)  # the batch's write is waiting for the database now
            other = Message.objects.only("pk", "recipients").first()
            try:
                outcome_log.for_database(database()).append("other:1", 10**6, noted_attempt(other))
                seen.append("noted")
            except outcome_log.Busy:
                seen.append("busy")
            finally:
                db.execute("COMMIT")
                connection.close()

    holder = threading.Thread(target=hold_the_database)

    def take_the_database(message: Any, _attempt: int) -> None:
        if message.subject == "S1":
            holder.start()
            taken.wait(5)

    queue_to_smtp.script.data = take_the_database
    queue(2)
    assert Engine(batch_size=2).send_due().sent == 2
    holder.join()
    assert seen == ["noted"]
    assert Message.objects.filter(status=Status.SENT, claimed_by="").count() == 2
    assert notes() == [("other:1", 10**6)]


@pytest.mark.parametrize(
    "started",
    [
        STARTED,
        STARTED.replace(microsecond=0),
        STARTED.astimezone(dt_timezone(timedelta(hours=5, minutes=30))),
    ],
    ids=["utc", "whole-second", "offset"],
)
def test_two_writers_of_the_same_notes_write_each_send_once(started: datetime) -> None:
    """A batch's end and its lease's recovery may write the same notes, in either order: the
    first moves the messages with their attempts, the second (with the values as read back
    from the log) neither moves them nor records an attempt again; a message that moved on
    without its attempt gets it, one that was deleted gets none."""
    rows = died_with_notes(4, noted=4)
    values = [{**noted_attempt(r), "started_at": started} for r in rows]
    ids = [r.pk for r in rows]
    Message.objects.filter(pk=rows[2].pk).update(status=Status.QUEUED, claimed_by="")
    Message.objects.filter(pk=rows[3].pk).delete()
    now = timezone.now()

    moved, recorded = recording_sqlite.record_noted(values, ids, token="dead:1", now=now)
    assert (sorted(moved), recorded) == (ids[:2], 3)
    from_the_log = [outcome_log._decode(outcome_log._encode(v)) for v in values]
    assert recording_sqlite.record_noted(from_the_log, ids, token="dead:1", now=now) == ([], 0)

    assert Message.objects.filter(status=Status.SENT).count() == 2
    assert Message.objects.get(pk=rows[2].pk).status == Status.QUEUED  # left to the queue
    assert sorted(Attempt.objects.values_list("message_id", flat=True)) == ids[:3]


def at_once(threads: int, write: Any) -> list[Any]:
    """What ``write`` returned in each of ``threads`` threads started together."""
    results: list[Any] = []
    start = threading.Barrier(threads)

    def run() -> None:
        try:
            start.wait()
            results.append(with_db_retry(write))
        finally:
            connection.close()

    writers = [threading.Thread(target=run) for _ in range(threads)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    return results


def test_writers_at_the_same_moment_move_each_message_once() -> None:
    """Three writers of the same notes at once (the batch, two recoveries): each message is
    moved by one of them, and has one attempt."""
    for _ in range(5):
        Attempt.objects.all().delete()
        Message.objects.all().delete()
        rows = died_with_notes(20, noted=0)
        ids = [r.pk for r in rows]
        values = [noted_attempt(r) for r in rows]
        Message.objects.filter(pk__in=ids[10:]).update(status=Status.QUEUED, claimed_by="")
        write = functools.partial(
            recording_sqlite.record_noted, values, ids, token="dead:1", now=timezone.now()
        )
        results = at_once(3, write)
        assert sorted(len(moved) for moved, _ in results) == [0, 0, 10]
        assert sum(recorded for _, recorded in results) == 20
        assert Attempt.objects.count() == 20
        assert set(Message.objects.filter(pk__in=ids[:10]).values_list("attempts", flat=True)) == {
            1
        }


def test_a_database_error_at_the_batchs_end_leaves_the_notes_to_recovery(
    queue_to_smtp, monkeypatch
) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("disk I/O error")

    with monkeypatch.context() as patched:
        patched.setattr(recording_sqlite, "record_noted", down)
        patched.setattr(logged_writer, "with_db_retry", lambda op: with_db_retry(op, budget=0))
        queue(3)
        with pytest.raises(OperationalError):
            Engine(batch_size=3).send_due()
    assert len(notes()) == 3
    assert Message.objects.filter(status=Status.SENDING).count() == 3
    assert not Attempt.objects.exists()

    Message.objects.update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert reclaim_expired(timezone.now()) == 0
    assert Message.objects.filter(status=Status.SENT).count() == 3
    assert Attempt.objects.count() == 3
    assert notes() == []


def test_a_database_error_in_recovery_keeps_what_was_written_and_the_rest_of_the_notes(
    monkeypatch,
) -> None:
    queue(4)
    past = timezone.now() - timedelta(minutes=1)
    log = outcome_log.for_database(database())
    claims = {}
    for token in ("dead:1", "dead:2"):
        rows = claim(token=token, now=timezone.now(), limit=2, lease=300)
        Message.objects.filter(pk__in=[r.pk for r in rows]).update(claimed_until=past)
        for row in rows:
            log.append(token, row.pk, noted_attempt(row))
        claims[token] = [r.pk for r in rows]
    real = recording_sqlite.record_noted

    def second_claim_fails(attempts: Any, ids: Any, *, token: str, now: Any) -> Any:
        if token == "dead:2":
            raise OperationalError("database is locked")
        return real(attempts, ids, token=token, now=now)

    monkeypatch.setattr(recording_sqlite, "record_noted", second_claim_fails)
    signalled: list[int] = []
    signals.message_sent.connect(
        lambda **kw: signalled.append(kw["message"].pk), weak=False, dispatch_uid="partial"
    )
    try:
        with pytest.raises(OperationalError):
            logged_writer.recover(timezone.now())
    finally:
        signals.message_sent.disconnect(dispatch_uid="partial")
    assert sorted(signalled) == claims["dead:1"]
    assert sorted(m for _, m in notes()) == claims["dead:2"]
    assert Message.objects.filter(status=Status.SENT).count() == 2
