"""On SQLite every batch of a process shares one writer thread (``outcome_writer.shared``), and
what several batches submitted while the last commit was under way goes into one commit: the
group commit of ``mailroom worker --concurrency N``. Each batch keeps its own claim token and
its own barrier."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.core.mail import EmailMessage
from django.db import connection
from django.utils import timezone

import mailroom
from mailroom import outcome_writer, recording_sqlite
from mailroom.batch import Batch, RecordingFailed
from mailroom.claiming import claim
from mailroom.classification import accepted
from mailroom.models import Attempt, Message, Status
from mailroom.outcomes import DeliveryResult
from mailroom.recording import Outcome
from mailroom.retry import Action, Decision
from mailroom.runner import Worker

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "sqlite", reason="the shared writer is SQLite's"),
]


def claimed_batch(token: str, n: int) -> tuple[Batch, list[Message]]:
    mailroom.enqueue_many(
        EmailMessage(f"{token} {i}", "B", "app@example.com", [f"{token}{i}@x.org"])
        for i in range(n)
    )
    now = timezone.now()
    rows = claim(token=token, now=now, limit=n, lease=300)
    assert len(rows) == n
    batch = Batch(
        token=token,
        worker="w",
        claimed_at=now,
        lease=300,
        flush_every=1,
        text_limit=1000,
        clock=timezone.now,
    )
    return batch, rows


def sent(message: Message) -> Outcome:
    recipients = tuple(message.recipients)
    return Outcome(
        message=message,
        result=DeliveryResult(recipients=recipients),
        classification=accepted(recipients),
        decision=Decision(action=Action.MARK_SENT, reason="accepted", charged=True),
        started_at=timezone.now() - timedelta(seconds=1),
        duration=0.01,
    )


class Commits:
    """Records each commit's claim tokens, in order. The first commit waits for ``gate``
    (``entered`` is set once the writer is there); with ``fail_shared`` a commit of more than
    one batch raises before writing anything."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, fail_shared: bool = False) -> None:
        self.tokens: list[list[str]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.fail_shared = fail_shared
        self._real = recording_sqlite.record_sent_many
        monkeypatch.setattr(recording_sqlite, "record_sent_many", self._record)

    def _record(self, writes, *, now):  # type: ignore[no-untyped-def]
        if not self.tokens:
            self.entered.set()
            assert self.gate.wait(10)
        self.tokens.append([token for _attempts, _ids, token in writes])
        if self.fail_shared and len(writes) > 1:
            raise RuntimeError("disk I/O error")
        return self._real(writes, now=now)


def submit_during_a_commit(commits: Commits, batch_a: Batch, rows_a, batch_b: Batch, rows_b):  # type: ignore[no-untyped-def]
    """a's first outcome, then (while the writer commits it) a's second and b's first."""
    member_a = outcome_writer.shared(batch_a)
    member_b = outcome_writer.shared(batch_b)
    member_a.submit(sent(rows_a[0]))
    assert commits.entered.wait(10)  # the writer has taken it and waits at the gate
    member_a.submit(sent(rows_a[1]))
    member_b.submit(sent(rows_b[0]))
    commits.gate.set()
    return member_a, member_b


def written_during_a_commit(commits: Commits, batch_a: Batch, rows_a, batch_b: Batch, rows_b):  # type: ignore[no-untyped-def]
    """:func:`submit_during_a_commit`, then both batches settled and closed: a's first outcome
    is a commit of its own, the two submitted meanwhile, from two batches, one commit."""
    member_a, member_b = submit_during_a_commit(commits, batch_a, rows_a, batch_b, rows_b)
    try:
        member_a.settle()
        member_b.settle()
    finally:
        member_a.close()
        member_b.close()
    assert commits.tokens == [["a"], ["a", "b"]]


def test_outcomes_of_two_batches_submitted_during_a_commit_share_the_next_one(
    monkeypatch,
) -> None:
    commits = Commits(monkeypatch)
    batch_a, rows_a = claimed_batch("a", 2)
    batch_b, rows_b = claimed_batch("b", 1)
    written_during_a_commit(commits, batch_a, rows_a, batch_b, rows_b)
    assert Message.objects.filter(status=Status.SENT, claimed_by="").count() == 3
    assert Attempt.objects.filter(verdict="sent").count() == 3
    assert [o.message.pk for o in batch_a.written] == [m.pk for m in rows_a]
    assert [o.message.pk for o in batch_b.written] == [m.pk for m in rows_b]
    assert outcome_writer._shared is None  # the last member to leave stopped the thread


def test_each_batch_is_fenced_on_its_own_token_within_the_shared_commit(monkeypatch) -> None:
    commits = Commits(monkeypatch)
    batch_a, rows_a = claimed_batch("a", 2)
    batch_b, rows_b = claimed_batch("b", 1)
    # b's lease was lost: another worker holds its message now.
    Message.objects.filter(pk=rows_b[0].pk).update(claimed_by="someone-else")
    written_during_a_commit(commits, batch_a, rows_a, batch_b, rows_b)
    assert set(Message.objects.filter(status=Status.SENT).values_list("pk", flat=True)) == {
        m.pk for m in rows_a
    }
    assert Message.objects.get(pk=rows_b[0].pk).claimed_by == "someone-else"
    # Its attempt is kept all the same, as every write keeps it.
    assert Attempt.objects.filter(message_id=rows_b[0].pk).exists()


def test_a_failed_shared_commit_is_raised_at_every_batch_barrier(monkeypatch) -> None:
    commits = Commits(monkeypatch, fail_shared=True)
    batch_a, rows_a = claimed_batch("a", 2)
    batch_b, rows_b = claimed_batch("b", 1)
    member_a, member_b = submit_during_a_commit(commits, batch_a, rows_a, batch_b, rows_b)
    try:
        with pytest.raises(RecordingFailed, match="disk I/O error"):
            member_a.settle()
        with pytest.raises(RecordingFailed, match="disk I/O error"):
            member_b.settle()
        with pytest.raises(RecordingFailed):
            member_b.submit(sent(rows_b[0]))
    finally:
        member_a.close()
        member_b.close()
    # a's first outcome was written on its own; the shared commit wrote nothing.
    assert list(Message.objects.filter(status=Status.SENT).values_list("pk", flat=True)) == [
        rows_a[0].pk
    ]
    assert [o.message.pk for o in batch_a.written] == [rows_a[0].pk]
    assert batch_b.written == []


def test_a_worker_with_two_threads_commits_through_one_writer_at_a_time(
    queue_to_smtp, monkeypatch
) -> None:
    lock = threading.Lock()
    writing = [0]
    most = [0]

    def one_at_a_time(real):  # type: ignore[no-untyped-def]
        def recorded(*args, **kwargs):  # type: ignore[no-untyped-def]
            with lock:
                writing[0] += 1
                most[0] = max(most[0], writing[0])
            try:
                time.sleep(0.002)  # a commit that takes a while, as on a real disk
                return real(*args, **kwargs)
            finally:
                with lock:
                    writing[0] -= 1

        return recorded

    # The outcome writer's commits (WAL, or the outcome log off), and the batches' writes of
    # their notes (the outcome log, in the test database's rollback journal).
    for name in ("record_sent_many", "record_noted"):
        monkeypatch.setattr(recording_sqlite, name, one_at_a_time(getattr(recording_sqlite, name)))
    mailroom.enqueue_many(
        EmailMessage(f"S{i}", "B", "app@example.com", [f"u{i}@x.org"]) for i in range(40)
    )
    worker = Worker(concurrency=2, batch_size=5, burst=True, say=lambda _: None, stop_signals=())
    assert worker.run() == 0
    assert Message.objects.filter(status=Status.SENT).count() == 40
    assert Attempt.objects.count() == 40
    assert len(queue_to_smtp.messages) == 40
    # The two delivery threads never had two writers at SQLite's lock at once.
    assert most[0] == 1
    assert outcome_writer._shared is None
