"""``mailroom status`` as a monitoring check: exit 2 past a threshold, saying which."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.mail import EmailMessage
from django.core.management import CommandError, call_command, execute_from_command_line
from django.db import connections
from django.utils import timezone

import mailroom
from mailroom import operations
from mailroom.models import BackendState, Message, Status

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _queueing(queue_to_smtp):
    return queue_to_smtp


def make(status: str = Status.QUEUED, **fields) -> Message:
    row = mailroom.enqueue(EmailMessage("S", "B", "a@example.com", ["t@example.com"]))
    Message.objects.filter(pk=row.pk).update(status=status, **fields)
    return row


def status(*args: str) -> str:
    out = io.StringIO()
    call_command("mailroom", "status", *args, stdout=out)
    return out.getvalue()


def ago(**kwargs: float) -> timezone.datetime:
    return timezone.now() - timedelta(**kwargs)


def test_failed_last_hour_counts_messages_that_failed_within_the_hour() -> None:
    make(Status.FAILED, last_attempt_at=ago(minutes=5))
    make(Status.FAILED, last_attempt_at=ago(hours=2))
    make(Status.FAILED, last_attempt_at=None)  # never attempted (suppressed): enqueued just now
    make(Status.FAILED, last_attempt_at=None, created_at=ago(hours=3))
    make(Status.SENT, last_attempt_at=ago(minutes=5))
    make(Status.QUEUED, last_attempt_at=ago(minutes=5))
    assert operations.queue_status().failed_last_hour == 2


def test_queue_status_keeps_its_keys_and_adds_failed_last_hour() -> None:
    data = operations.queue_status().as_json()
    assert {"queued", "waiting", "oldest_due_age_seconds", "paused_backends"} <= set(data)
    assert data["failed_last_hour"] == 0


def test_within_every_threshold_the_command_succeeds() -> None:
    make(due_at=ago(minutes=1))
    make(Status.FAILED, last_attempt_at=ago(minutes=1))
    out = status("--max-oldest-due", "600", "--max-failed-last-hour", "1", "--max-paused", "0")
    assert "failed in the last hour: 1" in out


def test_an_old_due_message_exits_2_and_says_so() -> None:
    make(due_at=ago(minutes=15))
    with pytest.raises(CommandError) as raised:
        status("--max-oldest-due", "600")
    assert raised.value.returncode == 2
    assert "the oldest due message has waited 900 s (more than 600 s)" in str(raised.value)


def test_too_many_failures_exits_2() -> None:
    for _ in range(3):
        make(Status.FAILED, last_attempt_at=ago(minutes=10))
    with pytest.raises(CommandError, match=r"3 message\(s\) failed in the last hour") as raised:
        status("--max-failed-last-hour", "2")
    assert raised.value.returncode == 2


def test_a_paused_backend_exits_2_with_max_paused_0() -> None:
    BackendState.objects.create(
        alias="default", paused_until=timezone.now() + timedelta(minutes=1), verdict="backend_down"
    )
    with pytest.raises(CommandError, match=r"1 backend\(s\) paused: default"):
        status("--max-paused", "0")


def test_every_threshold_crossed_is_named_and_json_lists_them() -> None:
    make(due_at=ago(minutes=15))
    make(Status.FAILED, last_attempt_at=ago(minutes=10))
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command(
            "mailroom",
            "status",
            "--json",
            "--max-oldest-due",
            "60",
            "--max-failed-last-hour",
            "0",
            stdout=out,
        )
    assert str(raised.value).count(";") == 1
    data = json.loads(out.getvalue())
    assert len(data["thresholds_exceeded"]) == 2
    assert data["failed_last_hour"] == 1


def test_without_thresholds_nothing_is_checked() -> None:
    make(due_at=ago(days=3))
    make(Status.FAILED, last_attempt_at=ago(minutes=1))
    status()


def test_manage_py_exits_2_past_a_threshold(monkeypatch, capsys) -> None:
    """The exit status a monitor (cron, Nagios, a Kubernetes probe) sees from manage.py."""
    make(due_at=ago(minutes=15))
    # manage.py closes every connection on its way out; here that is the test's own transaction.
    monkeypatch.setattr(connections, "close_all", lambda: None)
    with pytest.raises(SystemExit) as exited:
        execute_from_command_line(["manage.py", "mailroom", "status", "--max-oldest-due", "600"])
    assert exited.value.code == 2
    assert "more than 600 s" in capsys.readouterr().err
