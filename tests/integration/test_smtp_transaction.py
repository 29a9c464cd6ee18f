"""mailroom's split SMTP transaction behaves exactly like smtplib's sendmail, and its hook
runs just before the server is asked to take the message; with a server that offers
PIPELINING (RFC 2920) too, where it sends its commands in one round trip."""

from __future__ import annotations

import smtplib

import pytest

from mailroom.smtp_transaction import PIPELINE_MAX_RECIPIENTS, sendmail

MESSAGE = b"Subject: hi\r\nMessage-ID: <m@x>\r\n\r\n.leading dot\r\nbody\r\n"


def outcome(send):
    try:
        return ("returned", send())
    except smtplib.SMTPException as exc:
        return (
            type(exc).__name__,
            getattr(exc, "smtp_code", None),
            getattr(exc, "recipients", None),
        )


SCRIPTS = {
    "accepted": lambda s: None,
    "partial-refusal": lambda s: s.script.rcpt.update({"b@x.org": "550 5.1.1 No such user"}),
    "all-refused": lambda s: s.script.rcpt.update(
        {"a@x.org": "550 5.1.1 No", "b@x.org": "451 4.7.1 Later"}
    ),
    "421-on-rcpt": lambda s: s.script.rcpt.update({"b@x.org": "421 4.3.2 Closing"}),
    "421-on-first-rcpt": lambda s: s.script.rcpt.update({"a@x.org": "421 4.3.2 Closing"}),
    "data-554": lambda s: setattr(s.script, "data", "554 5.7.1 Rejected"),
    "data-421": lambda s: setattr(s.script, "data", "421 4.3.2 Closing"),
    "mail-550": lambda s: setattr(s.script, "mail_from", "550 5.7.1 Sender refused"),
    "mail-421": lambda s: setattr(s.script, "mail_from", "421 4.3.2 Closing"),
}


@pytest.fixture(params=[False, True], ids=["lockstep", "pipelining"])
def offers_pipelining(request, smtp_server) -> bool:
    smtp_server.script.pipelining = request.param
    return bool(request.param)


def _then_a_clean_message(conn: smtplib.SMTP, send) -> tuple:
    """What sending one more, acceptable, message on the same connection gives: a refusal
    must leave the dialogue in step (every pipelined reply read) for the next message."""
    if conn.sock is None:
        return ("closed",)
    return outcome(lambda: send(conn, ["ok@x.org"]))


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_same_outcome_as_smtplib_sendmail(smtp_server, offers_pipelining, script) -> None:
    SCRIPTS[script](smtp_server)
    to = ["a@x.org", "b@x.org"]

    def theirs_send(conn, to):
        return conn.sendmail("f@x.org", to, MESSAGE)

    def ours_send(conn, to):
        return sendmail(conn, "f@x.org", to, MESSAGE, before_commit=lambda: None)

    with smtplib.SMTP(smtp_server.host, smtp_server.port) as conn:
        theirs = outcome(lambda: theirs_send(conn, to))
        theirs_next = _then_a_clean_message(conn, theirs_send)
    received_by_smtplib = smtp_server.count
    assert smtp_server.pipelined == 0  # smtplib never pipelines
    with smtplib.SMTP(smtp_server.host, smtp_server.port) as conn:
        ours = outcome(lambda: ours_send(conn, to))
        ours_next = _then_a_clean_message(conn, ours_send)
    assert ours == theirs
    assert ours_next == theirs_next
    assert smtp_server.count == 2 * received_by_smtplib
    if theirs[0] == "returned":
        first, second = smtp_server.messages[0], smtp_server.messages[received_by_smtplib]
        assert first.data == second.data  # dot-stuffing and line ends identical
    # The pipelined path was taken where offered (and only there).
    assert (smtp_server.pipelined > 0) == offers_pipelining


def test_pipelining_can_be_declined(smtp_server) -> None:
    smtp_server.script.pipelining = True
    with smtplib.SMTP(smtp_server.host, smtp_server.port) as conn:
        for pipelining in (False, True):
            sendmail(
                conn,
                "f@x.org",
                ["a@x.org"],
                MESSAGE,
                before_commit=lambda: None,
                pipelining=pipelining,
            )
    assert smtp_server.count == 2
    assert smtp_server.pipelined == 1


def test_many_recipients_go_one_command_at_a_time(smtp_server) -> None:
    # A pipelined group must fit the sockets' buffers while nobody reads the replies.
    smtp_server.script.pipelining = True
    many = [f"r{i}@x.org" for i in range(PIPELINE_MAX_RECIPIENTS + 1)]
    with smtplib.SMTP(smtp_server.host, smtp_server.port) as conn:
        sendmail(conn, "f@x.org", many, MESSAGE, before_commit=lambda: None)
        sendmail(conn, "f@x.org", many[:-1], MESSAGE, before_commit=lambda: None)
    assert smtp_server.recipient_count == 2 * PIPELINE_MAX_RECIPIENTS + 1
    assert smtp_server.pipelined == 1


def test_the_hook_runs_before_the_server_takes_the_message(smtp_server, offers_pipelining) -> None:
    seen: list[int] = []
    with smtplib.SMTP(smtp_server.host, smtp_server.port) as conn:
        sendmail(
            conn,
            "f@x.org",
            ["a@x.org"],
            MESSAGE,
            before_commit=lambda: seen.append(smtp_server.count),
        )
    assert seen == [0]
    assert smtp_server.count == 1


def test_a_failing_hook_abandons_the_message(smtp_server, offers_pipelining) -> None:
    def fail() -> None:
        raise RuntimeError("the previous outcome could not be written")

    conn = smtplib.SMTP(smtp_server.host, smtp_server.port)
    with pytest.raises(RuntimeError):
        sendmail(conn, "f@x.org", ["a@x.org"], MESSAGE, before_commit=fail)
    assert smtp_server.count == 0
