"""The next message's envelope goes out with a message's final dot (RFC 2920 lets message
content start a group), so a message costs one round trip to its server instead of two; and a
session that does not deliver the message it announced never lets the server take anything
else for it."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.utils import timezone

import mailroom
from mailroom.claiming import claim
from mailroom.delivery import DeliverySession
from mailroom.models import Attempt, Message, Status
from mailroom.worker import Engine, RunStats

pytestmark = pytest.mark.django_db(transaction=True)


def queue(n: int) -> list[Message]:
    return mailroom.enqueue_many(
        EmailMessage(f"S{i}", "Body", "app@example.com", [f"u{i}@x.org"]) for i in range(n)
    )


def claimed(n: int) -> list[Message]:
    queue(n)
    rows = claim(token="t:1", now=timezone.now(), limit=n, lease=60)
    assert len(rows) == n
    return sorted(rows, key=lambda r: r.subject)


@pytest.mark.parametrize("offers_pipelining", [False, True], ids=["lockstep", "pipelining"])
def test_each_envelope_goes_with_the_dot_before_it(queue_to_smtp, offers_pipelining) -> None:
    server = queue_to_smtp
    server.script.pipelining = offers_pipelining
    queue(25)

    stats = Engine(batch_size=10).send_due()

    assert (stats.sent, stats.batches) == (25, 3)
    assert server.count == 25
    assert not server.duplicate_message_ids()
    # Within each batch every message but the first came ahead: 9 + 9 + 4.
    assert server.chained == (22 if offers_pipelining else 0)
    assert server.connections == 1
    assert Message.objects.filter(status=Status.SENT).count() == 25


def test_refusals_in_a_chain_keep_their_own_outcomes(queue_to_smtp) -> None:
    """A refusal at a message's dot, a refused sender and a refused recipient of messages
    whose envelopes went ahead: each its own outcome, the others sent, one connection."""
    server = queue_to_smtp
    server.script.pipelining = True
    server.script.data_fail_times("554 5.7.1 Spam", subject_contains="S3")
    server.script.rcpt["u5@x.org"] = "550 5.1.1 No such user"
    server.script.rcpt_fail_times("u7@x.org", "451 4.3.0 Later")
    queue(10)

    Engine(batch_size=10).send_due()

    status = dict(Message.objects.values_list("subject", "status"))
    assert status.pop("S3") == Status.FAILED
    assert status.pop("S5") == Status.FAILED
    assert status.pop("S7") == Status.QUEUED  # to retry later
    assert set(status.values()) == {Status.SENT}
    assert server.count == 7
    assert server.connections == 1
    assert Attempt.objects.count() == 10


def test_another_message_than_the_one_announced_goes_over_a_new_connection(
    queue_to_smtp,
) -> None:
    server = queue_to_smtp
    server.script.pipelining = True
    first, announced, other = claimed(3)
    session = DeliverySession("default")
    session.open()
    try:
        assert session.deliver(first, following=announced).error is None
        # The server has the announced message's envelope and may have said 354 to it:
        # nothing but its bytes may follow on that connection.
        assert not session.still_open()
        result = session.deliver(other)
    finally:
        session.close()
    assert result.error is None
    assert server.chained == 1
    assert [m.subject for m in server.messages] == ["S0", "S2"]
    assert server.connections == 2


def test_closing_with_an_envelope_ahead_does_not_wait_on_the_server(queue_to_smtp) -> None:
    """A QUIT after a 354 would be read as a line of the message, and its reply would never
    come: the socket is closed instead, at once, and the server takes nothing."""
    server = queue_to_smtp
    server.script.pipelining = True
    first, announced = claimed(2)
    session = DeliverySession("default")
    session.open()
    session.deliver(first, following=announced)
    started = time.monotonic()
    session.close()
    # The backend's timeout is 5 s (conftest.smtp_options): waiting for a reply takes that.
    assert time.monotonic() - started < 2.5
    assert session.backend is not None
    assert session.backend.connection is None  # type: ignore[attr-defined]
    assert server.count == 1


def test_a_stop_with_an_envelope_ahead_puts_that_message_back_unsent(queue_to_smtp) -> None:
    server = queue_to_smtp
    server.script.pipelining = True
    queue(5)
    stop = threading.Event()

    def at_the_first_dot(_message: Any, _attempt: int) -> None:
        stop.set()  # as SIGTERM would, while the first message is with the server

    server.script.data = at_the_first_dot
    stats = RunStats()
    Engine(batch_size=5).run_batch(stats, stop=stop)

    assert server.count == 1
    assert server.chained == 1  # the second's envelope had gone out
    rows = dict(Message.objects.values_list("subject", "status"))
    assert rows == {"S0": Status.SENT, **{f"S{i}": Status.QUEUED for i in range(1, 5)}}
    assert Attempt.objects.count() == 1
    # Put back uncharged: the next run sends them.
    server.script.data = None
    Engine().send_due()
    assert server.count == 5
    assert not server.duplicate_message_ids()


def test_a_message_expired_behind_an_envelope_sent_ahead_is_not_sent(queue_to_smtp) -> None:
    server = queue_to_smtp
    server.script.pipelining = True
    queue(3)
    # S1 expires while S0 is with the server, after S1's envelope went out with S0's dot.
    Message.objects.filter(subject="S1").update(expires_at=timezone.now() + timedelta(seconds=1))

    def slow_first(message: Any, _attempt: int) -> None:
        if message.subject == "S0":
            time.sleep(1.2)

    server.script.data = slow_first
    Engine().send_due()

    rows = dict(Message.objects.values_list("subject", "status"))
    assert rows == {"S0": Status.SENT, "S1": Status.FAILED, "S2": Status.SENT}
    assert "expired" in Message.objects.get(subject="S1").reason
    assert sorted(m.subject for m in server.messages) == ["S0", "S2"]
    # S1's envelope went ahead; S2 went over a new connection, never after S1's 354.
    assert server.chained == 1
    assert server.connections == 2
