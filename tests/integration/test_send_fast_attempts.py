"""What the fast send path stores is what the ordinary write stores, column for column.

The same messages go through the same server script twice: once with outcomes written as
``mailroom send`` writes them outside a transaction (on PostgreSQL the pipelined write, its
attempt's columns bound one by one), once by the batch itself through ``recording.record``
(the general path, and on PostgreSQL the jsonb_to_recordset statement for plain sends).
Sent, partially refused, refused, deferred and retried-then-sent messages; the attempt rows
and the messages must come out identical, but for what time alone decides (a duration).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.utils import timezone

import mailroom
from mailroom import worker
from mailroom.models import Attempt, BackendState, Message
from mailroom.worker import Engine

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGE_COLUMNS = (
    "status",
    "attempts",
    "reason",
    "pending_recipients",
    "refused_recipients",
    "sent_at",
    "last_attempt_at",
    "due_at",
    "budget_since",
    "claimed_by",
    "claimed_until",
)


def _queue() -> None:
    mailroom.enqueue_many(
        [
            EmailMessage("plain1", "B", "app@example.com", ["u1@x.org"]),
            EmailMessage("plain2", "B", "app@example.com", ["u2@x.org", "U3@X.org"]),
            EmailMessage("partial", "B", "app@example.com", ["u4@x.org", "gone@x.org"]),
            EmailMessage("refused", "B", "app@example.com", ["gone2@x.org"]),
            EmailMessage("deferred", "B", "app@example.com", ["u5@x.org", "later@x.org"]),
            EmailMessage("retried", "B", "app@example.com", ["once@x.org"]),
            EmailMessage("plain3", "B", "Ünïcode <app@example.com>", ["Zoë <u6@x.org>"]),
        ]
    )


def _run(server: Any, monkeypatch: pytest.MonkeyPatch, *, pipelined: bool) -> dict[str, Any]:
    Attempt.objects.all().delete()
    Message.objects.all().delete()
    BackendState.objects.all().delete()
    script = server.script
    script.rcpt["gone@x.org"] = "550 5.1.1 No such user"
    script.rcpt["gone2@x.org"] = "550 5.1.1 No such user"
    script.rcpt["later@x.org"] = "451 4.3.0 Try again later"
    script.rcpt_fail_times("once@x.org", "450 4.2.0 Mailbox busy", 1)
    if not pipelined:
        monkeypatch.setattr(worker, "_writer_for_this_connection", lambda: None)
    _queue()
    start = (timezone.now() + timedelta(seconds=1)).replace(microsecond=123456)
    now = [start]

    def clock() -> datetime:
        return now[0]

    engine = Engine(worker_id="w-fixed", clock=clock, rng=lambda: 0.5)
    engine.send_due()
    now[0] = start + timedelta(hours=6)  # the retries are due
    engine.send_due()
    monkeypatch.undo()
    attempts: dict[str, list[dict[str, Any]]] = {}
    for a in Attempt.objects.select_related("message").order_by("id"):
        row = {f.attname: getattr(a, f.attname) for f in Attempt._meta.concrete_fields}
        for volatile in ("id", "message_id", "duration"):
            row.pop(volatile)
        row["started_at"] -= start
        attempts.setdefault(a.message.subject, []).append(row)
    messages = {}
    for m in Message.objects.all():
        row = {c: getattr(m, c) for c in MESSAGE_COLUMNS}
        if row["due_at"] == m.created_at:
            row["due_at"] = None  # as enqueued: not rescheduled
        for c in ("sent_at", "last_attempt_at", "due_at", "budget_since", "claimed_until"):
            if row[c] is not None:
                row[c] -= start
        messages[m.subject] = row
    return {"attempts": attempts, "messages": messages}


def test_stored_attempts_and_messages_are_the_same_either_way(queue_to_smtp, monkeypatch) -> None:
    fast = _run(queue_to_smtp, monkeypatch, pipelined=True)
    plain = _run(queue_to_smtp, monkeypatch, pipelined=False)
    assert fast["attempts"] == plain["attempts"]
    for subject, row in fast["messages"].items():
        assert row == plain["messages"][subject], subject
    statuses = {s: m["status"] for s, m in fast["messages"].items()}
    assert statuses == {
        "plain1": "sent",
        "plain2": "sent",
        "partial": "sent",
        "refused": "failed",
        "deferred": "queued",
        "retried": "sent",
        "plain3": "sent",
    }
    assert [a["verdict"] for a in fast["attempts"]["retried"]] == ["retry", "sent"]
    assert fast["attempts"]["plain2"][0]["recipients"] == {
        "u2@x.org": {"state": "sent"},
        "U3@X.org": {"state": "sent"},
    }
    assert fast["attempts"]["plain1"][0]["reason"] == "accepted for delivery"
    assert fast["attempts"]["plain1"][0]["charged"] is True
    assert fast["attempts"]["plain1"][0]["code"] is None
