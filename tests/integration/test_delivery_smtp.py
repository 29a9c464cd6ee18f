"""Delivery through Django's SMTP backend to a real (scripted) SMTP server."""

from __future__ import annotations

import logging

import pytest
from django.core import mail
from django.core.mail import EmailMessage

import mailroom
from mailroom.models import Attempt, BackendState, Message, Status
from mailroom.operations import resume_backends

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _queueing(queue_to_smtp):
    return queue_to_smtp


def queue(n: int = 1, *, to: str = "ok{i}@example.com", **kw) -> list[Message]:
    return [
        mailroom.enqueue(EmailMessage(f"S{i}", "Body", "app@example.com", [to.format(i=i)]), **kw)
        for i in range(n)
    ]


@pytest.fixture(autouse=True, params=[False, True], ids=["lockstep", "pipelining"])
def offers_pipelining(request, smtp_server) -> bool:
    """Every test here against a server without PIPELINING and one with it (RFC 2920)."""
    smtp_server.script.pipelining = request.param
    return bool(request.param)


def test_send_delivers_every_due_message_over_one_connection(
    smtp_server, run_send, offers_pipelining
) -> None:
    rows = queue(5)
    output = run_send()
    assert smtp_server.count == 5
    assert smtp_server.connections == 1
    assert smtp_server.pipelined == (5 if offers_pipelining else 0)
    assert set(smtp_server.message_ids()) == {r.message_id for r in rows}
    assert Message.objects.filter(status=Status.SENT).count() == 5
    assert "5 sent" in output


def test_each_attempt_is_recorded(smtp_server, run_send) -> None:
    [row] = queue(1)
    run_send()
    attempt = Attempt.objects.get(message=row)
    assert (attempt.verdict, attempt.charged) == ("sent", True)
    assert attempt.recipients == {"ok0@example.com": {"state": "sent"}}
    row.refresh_from_db()
    assert (row.attempts, row.sent_at is not None) == (1, True)


def test_high_priority_goes_first_then_oldest(smtp_server, run_send) -> None:
    low = queue(1, priority="low")[0]
    normal = queue(1)[0]
    high = queue(1, priority="high")[0]
    run_send("--batch-size", "1")
    assert smtp_server.message_ids() == [high.message_id, normal.message_id, low.message_id]


def test_a_message_scheduled_for_later_is_not_sent_yet(smtp_server, run_send) -> None:
    from django.utils import timezone

    queue(1, send_at=timezone.now() + timezone.timedelta(hours=1))
    run_send()
    assert smtp_server.count == 0


def test_permanent_refusal_fails_at_once_and_keeps_the_reason(smtp_server, run_send) -> None:
    smtp_server.script.rcpt["gone@example.com"] = "550 5.1.1 No such user"
    [row] = queue(1, to="gone@example.com")
    run_send()
    row.refresh_from_db()
    assert row.status == Status.FAILED
    assert "550" in row.reason
    assert "5.1.1" in row.reason
    attempt = Attempt.objects.get(message=row)
    assert attempt.recipients["gone@example.com"]["state"] == "failed"
    assert attempt.enhanced_code == "5.1.1"


def test_greylisted_message_is_retried_later_and_then_sent(smtp_server, run_send) -> None:
    smtp_server.script.rcpt_fail_times("grey@example.com", "451 4.7.1 Greylisted", times=1)
    [row] = queue(1, to="grey@example.com")
    run_send()
    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.QUEUED, 1)
    assert row.due_at > row.created_at
    mailroom_retry_now()
    run_send()
    row.refresh_from_db()
    assert row.status == Status.SENT
    assert smtp_server.count == 1


def mailroom_retry_now() -> None:
    from mailroom.operations import retry_deferred

    retry_deferred()


def test_partial_refusal_retries_only_the_refused_recipients(smtp_server, run_send) -> None:
    smtp_server.script.rcpt_fail_times("grey@example.com", "451 4.7.1 Greylisted", times=1)
    smtp_server.script.rcpt["gone@example.com"] = "550 5.1.1 No such user"
    row = mailroom.enqueue(
        EmailMessage(
            "S", "B", "app@example.com", ["ok@example.com", "grey@example.com", "gone@example.com"]
        )
    )
    run_send()
    row.refresh_from_db()
    assert row.status == Status.QUEUED
    assert row.pending_recipients == ["grey@example.com"]
    first = Attempt.objects.get(message=row)
    assert first.verdict == "retry_recipients"
    assert {a: r["state"] for a, r in first.recipients.items()} == {
        "ok@example.com": "sent",
        "grey@example.com": "retry",
        "gone@example.com": "failed",
    }

    mailroom_retry_now()
    run_send()
    row.refresh_from_db()
    assert row.status == Status.SENT
    # ok@ got it once, grey@ once (on the retry), gone@ never.
    deliveries = [r for m in smtp_server.messages for r in m.rcpt_tos]
    assert sorted(deliveries) == ["grey@example.com", "ok@example.com"]
    assert "gone@example.com" in row.reason


def test_partially_refused_for_good_is_sent_with_the_refusal_recorded(
    smtp_server, run_send
) -> None:
    smtp_server.script.rcpt["gone@example.com"] = "550 5.1.1 No such user"
    row = mailroom.enqueue(
        EmailMessage("S", "B", "app@example.com", ["ok@example.com", "gone@example.com"])
    )
    run_send()
    row.refresh_from_db()
    assert row.status == Status.SENT
    assert "gone@example.com" in row.reason


def test_server_down_charges_no_attempt_and_pauses_the_backend(smtp_server, run_send) -> None:
    rows = queue(3)
    smtp_server.stop()
    output = run_send()
    assert "paused" in output
    for row in rows:
        row.refresh_from_db()
        assert (row.status, row.attempts) == (Status.QUEUED, 0)
    state = BackendState.objects.get(alias="default")
    assert state.verdict == "backend_down"
    assert state.paused_until is not None
    assert Attempt.objects.filter(charged=True).count() == 0

    smtp_server.start()
    resume_backends()
    run_send()
    assert smtp_server.count == 3
    assert Message.objects.filter(status=Status.SENT).count() == 3
    assert BackendState.objects.get(alias="default").failures == 0


def test_a_paused_backend_is_not_tried_until_its_pause_ends(
    smtp_server, mailroom_settings, run_send
) -> None:
    mailroom_settings(
        BACKENDS={
            "default": {
                "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                "OPTIONS": {"host": smtp_server.host, "port": smtp_server.port},
            }
        },
    )
    queue(2)
    smtp_server.stop()
    run_send()
    smtp_server.start()
    run_send()  # still paused: nothing is claimed
    assert smtp_server.count == 0


def test_421_during_the_batch_stops_it_without_charging(smtp_server, run_send) -> None:
    smtp_server.script.rcpt["closing@example.com"] = "421 4.3.2 Shutting down"
    first = queue(1)[0]
    closing = queue(1, to="closing@example.com")[0]
    after = queue(1, to="after{i}@example.com")[0]
    run_send()
    first.refresh_from_db()
    closing.refresh_from_db()
    after.refresh_from_db()
    assert first.status == Status.SENT
    assert (closing.status, closing.attempts) == (Status.QUEUED, 0)
    assert (after.status, after.attempts) == (Status.QUEUED, 0)
    assert Attempt.objects.get(message=closing).charged is False
    assert not Attempt.objects.filter(message=after).exists()


def test_dropped_connection_pauses_the_backend_and_loses_nothing(smtp_server, run_send) -> None:
    rows = queue(4)
    smtp_server.script.drop_connection_after(2)
    run_send()
    assert smtp_server.count == 2
    resume_backends()
    run_send()
    assert smtp_server.count == 4
    assert all(Message.objects.get(pk=r.pk).status == Status.SENT for r in rows)
    assert Message.objects.filter(attempts__gt=1).count() == 0


def test_authentication_failure_is_a_misconfiguration_logged_at_error(
    smtp_server, mailroom_settings, run_send, caplog
) -> None:
    smtp_server.auth = ("user", "right")
    mailroom_settings(
        BACKENDS={
            "default": {
                "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                "OPTIONS": {
                    "host": smtp_server.host,
                    "port": smtp_server.port,
                    "username": "user",
                    "password": "wrong",
                    "timeout": 5,
                },
            }
        }
    )
    [row] = queue(1)
    with caplog.at_level(logging.ERROR, logger="mailroom"):
        run_send()
    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.QUEUED, 0)
    state = BackendState.objects.get(alias="default")
    assert state.verdict == "backend_misconfigured"
    assert "535" in state.reason
    assert any(r.levelno == logging.ERROR and "paused" in r.getMessage() for r in caplog.records)


def test_data_rejection_for_one_message_does_not_stop_the_others(smtp_server, run_send) -> None:
    smtp_server.script.data_fail_times("554 5.7.1 Message refused", times=99, subject_contains="S1")
    rows = queue(3)
    run_send()
    states = [Message.objects.get(pk=r.pk).status for r in rows]
    assert states == [Status.SENT, Status.FAILED, Status.SENT]


def test_retry_budget_runs_out_into_failed_with_reason(
    smtp_server, mailroom_settings, queue_to_smtp, run_send
) -> None:
    smtp_server.script.rcpt["full@example.com"] = "452 4.2.2 Mailbox full"
    mailroom_settings(
        MAX_ATTEMPTS=3,
        BACKENDS={
            "default": {
                "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                "OPTIONS": {"host": smtp_server.host, "port": smtp_server.port},
            }
        },
    )
    [row] = queue(1, to="full@example.com")
    for _ in range(3):
        mailroom_retry_now()
        run_send()
    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.FAILED, 3)
    assert row.reason.startswith("gave up after 3 attempts")


def test_send_exits_normally_when_messages_fail(smtp_server, run_send) -> None:
    smtp_server.script.rcpt["gone@example.com"] = "550 5.1.1 No such user"
    queue(1, to="gone@example.com")
    assert "1 failed" in run_send()


def test_expired_message_fails_with_reason_expired(smtp_server, run_send) -> None:
    from django.utils import timezone

    [row] = queue(1, expires_at=timezone.now() - timezone.timedelta(seconds=1))
    run_send()
    row.refresh_from_db()
    assert row.status == Status.FAILED
    assert "expired" in row.reason
    assert smtp_server.count == 0


def test_mail_sent_with_send_mail_is_delivered(smtp_server, run_send) -> None:
    mail.send_mail("Hello", "Body", "app@example.com", ["x@example.com"])
    run_send()
    assert smtp_server.recipients_of(smtp_server.message_ids()[0]) == ["x@example.com"]


def test_without_a_mailroom_setting_delivery_uses_the_email_settings(
    settings, smtp_server, run_send
) -> None:
    del settings.MAILROOM
    settings.EMAIL_BACKEND = "mailroom.backend.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = smtp_server.host, smtp_server.port
    mail.send_mail("Hello", "Body", "app@example.com", ["x@example.com"])
    run_send()
    assert smtp_server.count == 1


def test_a_later_permanent_refusal_says_who_already_has_the_message(smtp_server, run_send) -> None:
    smtp_server.script.rcpt_fail_times("late@example.com", "451 4.7.1 Greylisted", times=1)
    row = mailroom.enqueue(
        EmailMessage("S", "B", "app@example.com", ["ok@example.com", "late@example.com"])
    )
    run_send()
    smtp_server.script.rcpt["late@example.com"] = "550 5.1.1 No such user"
    mailroom_retry_now()
    run_send()
    row.refresh_from_db()
    assert row.status == Status.FAILED
    assert "550 5.1.1" in row.reason
    assert row.reason.endswith("(delivered earlier to ok@example.com)")


def test_a_server_hanging_up_after_a_refusal_costs_only_a_new_connection(
    smtp_server, run_send
) -> None:
    """A refusal normally leaves the connection usable (smtplib sends RSET); a server that
    hangs up on that RSET leaves a refusal to record and no connection. The next message goes
    over a new one, in the same run, and the backend is not paused."""
    smtp_server.script.rcpt["gone@example.com"] = "550 5.1.1 No such user"
    smtp_server.script.hang_up_on_rset = True
    [refused] = queue(1, to="gone@example.com", priority="high")
    [then] = queue(1)

    run_send()

    refused.refresh_from_db()
    then.refresh_from_db()
    assert refused.status == Status.FAILED
    assert then.status == Status.SENT
    assert smtp_server.count == 1
    assert smtp_server.connections == 2
    assert not BackendState.objects.filter(paused_until__isnull=False).exists()


def test_a_message_bigger_than_the_inline_limit_is_read_when_sent_and_arrives_whole(
    smtp_server, run_send, monkeypatch
) -> None:
    """Messages whose MIME bytes exceed claiming.INLINE_MIME are claimed without them, read
    just before they are sent (the second while the first is with the server), and delivered
    byte for byte; the small one beside them as before."""
    from mailroom import claiming
    from mailroom.models import MessageContent

    monkeypatch.setattr(claiming, "INLINE_MIME", 2000)
    claiming._returning.cache_clear()  # the one-statement claims have the limit in their SQL
    claiming._returning_sqlite.cache_clear()
    try:
        big, bigger = (
            mailroom.enqueue(
                EmailMessage(subject, "line of text\n" * lines, "app@example.com", ["b@x.org"])
            )
            for subject, lines in (("Big", 400), ("Bigger", 800))
        )
        small = mailroom.enqueue(
            EmailMessage("Small", "Body", "app@example.com", ["small@example.com"])
        )
        stored = dict(MessageContent.objects.values_list("pk", "mime"))
        assert len(stored[bigger.pk]) > len(stored[big.pk]) > 2000 > len(stored[small.pk])
        run_send()
    finally:
        claiming._returning.cache_clear()
        claiming._returning_sqlite.cache_clear()
    received = {m.message_id: m.data for m in smtp_server.messages}
    for row in (big, bigger, small):
        # The server's copy, as stored (line ends aside: DATA ends on one, and the server
        # keeps LF where the wire had CRLF).
        assert _plain(received[row.message_id]) == _plain(bytes(stored[row.pk]))
    assert Message.objects.filter(status=Status.SENT).count() == 3


def _plain(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").rstrip(b"\n")


@pytest.mark.parametrize(
    ("field", "address"),
    [
        ("recipients", "bob@example.com\r\nRSET"),
        ("recipients", "Bob <bob@example.com>\nRCPT TO:<eve@example.com>"),
        ("from_email", "app@example.com\r\nRCPT TO:<eve@example.com>"),
    ],
)
def test_an_address_with_a_line_break_fails_its_message_and_no_other(
    smtp_server, run_send, field, address
) -> None:
    # enqueue refuses such an address; a row written some other way (by hand, by an import)
    # must not reach the server with its address cut short at the line break, as
    # smtplib.quoteaddr would cut it, nor as a command of its own.
    rows = queue(3)
    value = [address] if field == "recipients" else address
    Message.objects.filter(pk=rows[1].pk).update(
        **{field: value, **({"pending_recipients": value} if field == "recipients" else {})}
    )
    run_send()
    bad = Message.objects.get(pk=rows[1].pk)
    assert bad.status == Status.FAILED
    assert "line break" in bad.reason
    assert {r.status for r in Message.objects.exclude(pk=rows[1].pk)} == {Status.SENT}
    assert smtp_server.count == 2
    received = [a for m in smtp_server.messages for a in (*m.rcpt_tos, m.mail_from)]
    assert not [a for a in received if "bob" in a or "eve" in a]
