"""SQLite's write of sent outcomes straight through ``sqlite3`` (``recording_sqlite``), outside
any transaction, as ``mailroom send`` and the worker make it."""

from __future__ import annotations

import pytest
from django.core.mail import EmailMessage
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import mailroom
from mailroom.claiming import claim
from mailroom.models import Attempt, Message, Status
from mailroom.recording_sqlite import record_sent
from mailroom.worker import Engine

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "sqlite", reason="the sqlite3 write is SQLite's"),
]


def claimed(n: int, token: str = "tok") -> list[Message]:
    mailroom.enqueue_many(
        EmailMessage(f"S{i}", "B", "app@example.com", [f"u{i}@x.org"]) for i in range(n)
    )
    return claim(token=token, now=timezone.now(), limit=n, lease=300)


def attempt_for(message: Message) -> Attempt:
    return Attempt(
        message_id=message.pk,
        started_at=timezone.now(),
        duration=0.01,
        backend=message.backend,
        worker="w",
        verdict="sent",
        charged=True,
        code=250,
        enhanced_code="2.0.0",
        reason="",
        recipients={message.recipients[0]: {"status": "sent", "code": 250}},
    )


@pytest.fixture
def commit_per_message(queue_to_smtp, settings):
    """The writer thread's commit per message (``SQLITE_OUTCOME_LOG`` off): the log writes
    its batch through the same function once, at the end (``test_outcome_log``)."""
    settings.MAILROOM = {**settings.MAILROOM, "SQLITE_OUTCOME_LOG": False}
    return queue_to_smtp


def test_mailroom_send_writes_each_sent_message_this_way(commit_per_message, monkeypatch) -> None:
    from mailroom import recording_plain, recording_sqlite

    calls: list[str] = []
    real = recording_sqlite.record_sent
    monkeypatch.setattr(
        recording_sqlite, "record_sent", lambda *a, **k: calls.append("raw") or real(*a, **k)
    )
    monkeypatch.setattr(
        recording_plain, "record_sent_plain", lambda *a, **k: pytest.fail("the ORM's way was used")
    )
    mailroom.enqueue_many(
        EmailMessage(f"S{i}", "B", "app@example.com", [f"u{i}@x.org"]) for i in range(5)
    )
    stats = Engine(batch_size=5).send_due()
    assert stats.sent == 5
    assert calls == ["raw"] * 5
    assert Message.objects.filter(status=Status.SENT, claimed_by="").count() == 5
    assert Attempt.objects.filter(verdict="sent").count() == 5


def test_mailroom_send_commits_outcomes_by_truncating_the_journal(
    commit_per_message, monkeypatch
) -> None:
    from mailroom import sqlite_commits

    modes: list[str] = []
    real = sqlite_commits.tune
    monkeypatch.setattr(sqlite_commits, "tune", lambda raw: modes.append(real(raw)) or modes[-1])
    mailroom.enqueue_many(
        EmailMessage(f"S{i}", "B", "app@example.com", [f"u{i}@x.org"]) for i in range(3)
    )
    assert Engine(batch_size=3).send_due().sent == 3
    # Tuned once, on the writer thread's own connection; the delivery thread's is untouched.
    assert modes == ["truncate"]
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone() == ("delete",)
    assert Message.objects.filter(status=Status.SENT).count() == 3


def test_the_statements_are_logged_as_django_logs_them() -> None:
    (message,) = claimed(1)
    with CaptureQueriesContext(connection) as queries:
        record_sent([attempt_for(message)], [message.pk], token="tok", now=timezone.now())
    statements = [q["sql"] for q in queries.captured_queries]
    assert statements[0] == "BEGIN IMMEDIATE"
    assert statements[1].startswith('INSERT INTO "mailroom_attempt"')
    assert statements[2].startswith('UPDATE "mailroom_message"')
    assert statements[3:] == ["COMMIT"]


def test_the_write_stores_what_the_orm_would() -> None:
    message, other = claimed(2)
    before = attempt_for(message)
    now = timezone.now()
    assert record_sent([before], [message.pk], token="tok", now=now) == 1
    stored = Attempt.objects.get(message_id=message.pk)
    for field in Attempt._meta.concrete_fields:
        if field.primary_key:
            continue
        assert getattr(stored, field.attname) == getattr(before, field.attname), field.name
    row = Message.objects.get(pk=message.pk)
    assert (row.status, row.sent_at, row.last_attempt_at) == (Status.SENT, now, now)
    assert (row.attempts, row.pending_recipients, row.claimed_by) == (1, [], "")
    assert Message.objects.get(pk=other.pk).status == Status.SENDING


def test_a_lost_lease_moves_nothing() -> None:
    (message,) = claimed(1, token="someone else")
    assert record_sent([attempt_for(message)], [message.pk], token="tok", now=timezone.now()) == 0
    assert Message.objects.get(pk=message.pk).status == Status.SENDING


def test_a_failed_write_rolls_back_whole_and_raises_djangos_error() -> None:
    (message,) = claimed(1)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TRIGGER refuse_sent BEFORE UPDATE OF status ON mailroom_message "
            "WHEN NEW.status = 'sent' BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
        )
    try:
        with pytest.raises(DatabaseError, match="refused by test"):
            record_sent([attempt_for(message)], [message.pk], token="tok", now=timezone.now())
        assert not connection.connection.in_transaction
        assert not Attempt.objects.exists(), "the attempt went with the failed update"
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER refuse_sent")
    assert record_sent([attempt_for(message)], [message.pk], token="tok", now=timezone.now()) == 1
