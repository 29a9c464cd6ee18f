"""``mailroom purge``: ended messages past an age go, with their attempts; live ones never."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.mail import EmailMessage
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import mailroom
from mailroom import retention
from mailroom.models import Attempt, Message, MessageContent, Status

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def _queueing(queue_to_smtp):
    return queue_to_smtp


def make(status: str, *, age: timedelta, attempts: int = 1, **fields) -> Message:
    """A message that ended (or not) ``age`` ago, with ``attempts`` attempt rows."""
    row = mailroom.enqueue(EmailMessage("S", "B", "a@example.com", ["t@example.com"]))
    when = timezone.now() - age
    values = {"status": status, "created_at": when - DAY, **fields}
    if status == Status.SENT:
        values["sent_at"] = when
    if attempts:
        values["last_attempt_at"] = when
    Message.objects.filter(pk=row.pk).update(**values)
    Attempt.objects.bulk_create(
        Attempt(message_id=row.pk, started_at=when, duration=0.1, backend="default", verdict="sent")
        for _ in range(attempts)
    )
    return row


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("mailroom", "purge", *args, stdout=out)
    return out.getvalue()


def remaining() -> set[int]:
    return set(Message.objects.values_list("pk", flat=True))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("45s", 45), ("2w", 14 * 86400)],
)
def test_durations(text: str, seconds: int) -> None:
    assert retention.parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "d", "30 days", "-1d", "1y", "1000000d", "9" * 30 + "w"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        retention.parse_duration(text)


def test_sent_and_failed_have_their_own_ages() -> None:
    old_sent = make(Status.SENT, age=40 * DAY, attempts=2)
    new_sent = make(Status.SENT, age=10 * DAY)
    old_failed = make(Status.FAILED, age=100 * DAY, attempts=3)
    mid_failed = make(Status.FAILED, age=40 * DAY)
    old_cancelled = make(Status.CANCELLED, age=100 * DAY, attempts=0)
    out = run("--sent-older-than", "30d", "--failed-older-than", "90d")
    assert remaining() == {new_sent.pk, mid_failed.pk}
    assert not Attempt.objects.filter(message_id__in=[old_sent.pk, old_failed.pk]).exists()
    assert old_cancelled.pk not in remaining()
    assert "deleted 1 sent message(s) and 2 attempt(s)" in out
    assert "deleted 2 failed message(s) and 3 attempt(s)" in out


def test_queued_and_sending_messages_are_never_touched_whatever_their_age() -> None:
    queued = make(Status.QUEUED, age=400 * DAY)
    sending = make(Status.SENDING, age=400 * DAY)
    run("--sent-older-than", "0s", "--failed-older-than", "0s")
    assert remaining() == {queued.pk, sending.pk}
    assert Attempt.objects.count() == 2


def test_only_the_kind_asked_for_is_purged() -> None:
    sent = make(Status.SENT, age=100 * DAY)
    make(Status.FAILED, age=100 * DAY)
    run("--failed-older-than", "30d")
    assert remaining() == {sent.pk}


def test_a_failed_message_never_attempted_is_aged_from_its_enqueue() -> None:
    never = make(Status.FAILED, age=0 * DAY, attempts=0)  # created a day ago
    run("--failed-older-than", "2d")
    assert never.pk in remaining()
    run("--failed-older-than", "12h")
    assert never.pk not in remaining()


def test_dry_run_counts_and_deletes_nothing() -> None:
    for _ in range(3):
        make(Status.SENT, age=40 * DAY, attempts=2)
    out = run("--sent-older-than", "30d", "--dry-run")
    assert "would delete 3 sent message(s) and 6 attempt(s)" in out
    assert Message.objects.count() == 3
    assert Attempt.objects.count() == 6


def test_purge_goes_in_batches_of_ids_and_never_reads_a_payload() -> None:
    for _ in range(5):
        make(Status.SENT, age=40 * DAY)
    batches = []
    with CaptureQueriesContext(connection) as queries:
        report = retention.purge(
            sent_older_than=30 * DAY,
            batch_size=2,
            on_batch=lambda kind, done: batches.append(done.messages),
        )
    assert report.counts["sent"] == retention.PurgeCount(messages=5, attempts=5)
    assert batches == [2, 4, 5]
    selects = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert selects
    assert not any("payload" in sql or "mime" in sql for sql in selects), selects
    assert not MessageContent.objects.exists()  # deleted with their messages


def test_purge_needs_an_age() -> None:
    with pytest.raises(CommandError, match="say what to purge"):
        run()


@pytest.mark.parametrize("age", ["soon", "1000000d"])
def test_a_bad_age_is_a_usage_error(age: str) -> None:
    with pytest.raises(CommandError, match="not a duration"):
        run("--sent-older-than", age)


def test_quiet_at_verbosity_zero_and_no_progress_off_a_terminal() -> None:
    make(Status.SENT, age=40 * DAY)
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "mailroom", "purge", "--sent-older-than", "1d", verbosity=0, stdout=out, stderr=err
    )
    assert (out.getvalue(), err.getvalue()) == ("", "")
    make(Status.SENT, age=40 * DAY)
    call_command("mailroom", "purge", "--sent-older-than", "1d", stdout=out, stderr=err)
    assert err.getvalue() == "", "progress is drawn on a terminal only"
