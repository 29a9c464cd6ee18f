"""The ``mailroom`` command's subcommands: status, retry, resume (send is covered elsewhere)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.mail import EmailMessage
from django.core.management import CommandError, call_command
from django.utils import timezone

import mailroom
from mailroom.models import BackendState, Message, Status

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _queueing(queue_to_smtp):
    return queue_to_smtp


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("mailroom", *args, stdout=out)
    return out.getvalue()


def make(status: str = Status.QUEUED, **fields) -> Message:
    row = mailroom.enqueue(EmailMessage("S", "B", "a@example.com", ["t@example.com"]))
    Message.objects.filter(pk=row.pk).update(status=status, **fields)
    row.refresh_from_db()
    return row


def test_status_json_has_an_integer_count_for_every_status() -> None:
    make(Status.QUEUED)
    make(Status.SENT)
    make(Status.FAILED)
    data = json.loads(run("status", "--json"))
    for name in ("queued", "sending", "sent", "failed", "cancelled"):
        assert isinstance(data[name], int)
    assert (data["queued"], data["sent"], data["failed"], data["cancelled"]) == (1, 1, 1, 0)


def test_status_reports_the_oldest_due_age_and_paused_backends() -> None:
    make(due_at=timezone.now() - timezone.timedelta(minutes=5))
    BackendState.objects.create(
        alias="default",
        paused_until=timezone.now() + timezone.timedelta(minutes=1),
        verdict="backend_down",
        reason="connection refused",
    )
    data = json.loads(run("status", "--json"))
    assert 290 < data["oldest_due_age_seconds"] < 400
    assert data["paused_backends"][0]["reason"] == "connection refused"
    text = run("status")
    assert "paused" in text
    assert "connection refused" in text


def test_retry_deferred_makes_waiting_messages_due_now() -> None:
    row = make(due_at=timezone.now() + timezone.timedelta(hours=1), attempts=2)
    assert "1 waiting" in run("retry", "--deferred")
    row.refresh_from_db()
    assert row.due_at <= timezone.now()
    assert row.attempts == 2, "making a message due does not reset its budget"


def test_retry_failed_requeues_with_a_fresh_budget_and_keeps_history() -> None:
    row = make(Status.FAILED, attempts=10, reason="gave up")
    run("retry", "--failed")
    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.QUEUED, 0)
    assert row.budget_since is not None


def test_retry_id_acts_on_one_message_only() -> None:
    one, other = make(Status.FAILED), make(Status.FAILED)
    run("retry", "--id", str(one.pk))
    assert Message.objects.get(pk=one.pk).status == Status.QUEUED
    assert Message.objects.get(pk=other.pk).status == Status.FAILED


def test_retry_of_an_id_that_names_no_message_says_so_and_does_nothing() -> None:
    failed = make(Status.FAILED)
    with pytest.raises(CommandError, match="no message with id 99999"):
        run("retry", "--id", str(failed.pk), "--id", "99999")
    failed.refresh_from_db()
    assert failed.status == Status.FAILED


def test_retry_without_a_target_is_an_error() -> None:
    with pytest.raises(CommandError, match="--deferred"):
        run("retry")


def test_resume_lifts_a_named_backend_or_all() -> None:
    later = timezone.now() + timezone.timedelta(hours=1)
    BackendState.objects.create(alias="default", paused_until=later, failures=3)
    BackendState.objects.create(alias="esp", paused_until=later, failures=1)
    assert "default" in run("resume", "default")
    assert BackendState.objects.get(alias="default").paused_until is None
    assert BackendState.objects.get(alias="esp").paused_until is not None
    run("resume")
    assert BackendState.objects.get(alias="esp").paused_until is None


def send_in_a_process(**environment: str) -> subprocess.CompletedProcess[str]:
    """``manage.py mailroom send`` as a real process, with the test settings and ``environment``."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **environment}
    return subprocess.run(
        [sys.executable, "-m", "django", "mailroom", "send"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_send_with_no_database_exits_non_zero() -> None:
    """Pointed at a PostgreSQL port where nothing listens."""
    proc = send_in_a_process(MAILROOM_TEST_DB="postgres", MAILROOM_PG_PORT="1")
    assert proc.returncode == 1
    assert "database cannot be used" in proc.stderr


def test_send_with_bad_settings_exits_non_zero() -> None:
    proc = send_in_a_process(MAILROOM_TEST_BAD_SETTINGS="1")
    assert proc.returncode == 1
    assert "mailroom.E006" in proc.stderr


@pytest.mark.parametrize(
    ("args", "refusal"),
    [
        (("send", "--batch-size", "0"), "must be at least 1, not 0"),
        (("send", "--batch-size", "-5"), "must be at least 1, not -5"),
        (("send", "--batch-size", "ten"), "not a whole number"),
        (("worker", "--burst", "--batch-size", "0"), "must be at least 1"),
        (("worker", "--burst", "--poll-interval", "-1"), "must be more than 0 seconds"),
        (("worker", "--burst", "--poll-interval", "0"), "must be more than 0 seconds"),
        (("worker", "--burst", "--poll-interval", "nan"), "not a number of seconds"),
        (("worker", "--burst", "--stop-timeout", "-1"), "must be 0 seconds or more"),
        (("status", "--max-oldest-due", "nan"), "not a number of seconds"),
        (("status", "--max-oldest-due", "-5"), "must be 0 seconds or more"),
        (("status", "--max-paused", "-1"), "must be at least 0, not -1"),
        (("status", "--max-failed-last-hour", "-1"), "must be at least 0"),
    ],
)
def test_a_size_or_an_interval_out_of_range_is_a_usage_error(args, refusal: str) -> None:
    """Before anything runs: a batch size of 0 had been taken for the default, a negative one
    was a traceback at the first claim, and a negative poll interval a worker polling its
    database in a busy loop."""
    make()
    with pytest.raises(CommandError, match=refusal):
        run(*args)
    assert Message.objects.get().status == Status.QUEUED


def test_the_engine_and_the_worker_refuse_the_same_values() -> None:
    from mailroom.runner import Worker
    from mailroom.worker import Engine

    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        Engine(batch_size=0)
    with pytest.raises(ValueError, match="poll_interval must be more than 0"):
        Worker(poll_interval=-1.0)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        Worker(batch_size=-5)
    assert Engine(batch_size=7).batch_size == 7
