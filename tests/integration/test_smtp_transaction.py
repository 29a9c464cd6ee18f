"""mailroom's split SMTP transaction behaves exactly like smtplib's sendmail, and its hook
runs just before the server is asked to take the message."""

from __future__ import annotations

import smtplib

import pytest

from mailroom.smtp_transaction import sendmail

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
    "data-554": lambda s: setattr(s.script, "data", "554 5.7.1 Rejected"),
    "mail-550": lambda s: setattr(s.script, "mail_from", "550 5.7.1 Sender refused"),
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_same_outcome_as_smtplib_sendmail(smtp_server, script) -> None:
    SCRIPTS[script](smtp_server)
    to = ["a@x.org", "b@x.org"]
    with smtplib.SMTP(smtp_server.host, smtp_server.port) as conn:
        theirs = outcome(lambda: conn.sendmail("f@x.org", to, MESSAGE))
    with smtplib.SMTP(smtp_server.host, smtp_server.port) as conn:
        ours = outcome(lambda: sendmail(conn, "f@x.org", to, MESSAGE, before_commit=lambda: None))
    assert ours == theirs
    if theirs[0] == "returned":
        first, second = smtp_server.messages
        assert first.data == second.data  # dot-stuffing and line ends identical


def test_the_hook_runs_before_the_server_takes_the_message(smtp_server) -> None:
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


def test_a_failing_hook_abandons_the_message(smtp_server) -> None:
    def fail() -> None:
        raise RuntimeError("the previous outcome could not be written")

    conn = smtplib.SMTP(smtp_server.host, smtp_server.port)
    with pytest.raises(RuntimeError):
        sendmail(conn, "f@x.org", ["a@x.org"], MESSAGE, before_commit=fail)
    assert smtp_server.count == 0
