"""mailroom's split SMTP transaction behaves exactly like smtplib's sendmail, and its hook
runs just before the server is asked to take the message; with a server that offers
PIPELINING (RFC 2920) too, where it sends its commands in one round trip, and where it sends
the next message's envelope with a message's final dot."""

from __future__ import annotations

import smtplib
import socket
import threading

import pytest

from mailroom.smtp_transaction import PIPELINE_MAX_RECIPIENTS, Envelope, sendmail

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


FIRST = b"Subject: first\r\nMessage-ID: <first@x>\r\n\r\nthe first\r\n"
TO = ("a@x.org", "b@x.org")


def _connect(server) -> smtplib.SMTP:
    return smtplib.SMTP(server.host, server.port, timeout=5)


def _first_announcing(
    conn: smtplib.SMTP,
    then_to: tuple[str, ...],
    said: list[bool],
    *,
    to: tuple[str, ...] = ("a@x.org",),
    pipelining: bool = True,
) -> dict[str, tuple[int, bytes]]:
    """Send FIRST with the envelope of MESSAGE to ``then_to`` announced after its dot;
    ``said`` gets True once that envelope is written."""
    return sendmail(
        conn,
        "f@x.org",
        list(to),
        FIRST,
        before_commit=lambda: None,
        pipelining=pipelining,
        then=Envelope("f@x.org", then_to, len(MESSAGE)),
        said_then=lambda: said.append(True),
    )


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_an_envelope_sent_ahead_changes_no_outcome(smtp_server, script) -> None:
    """Two messages and a clean third, through smtplib and through mailroom with the second's
    envelope sent after the first's dot: the same outcome for each, whatever the server says
    (refusals at MAIL, RCPT or the dot, a 421 anywhere), and the same messages received."""
    smtp_server.script.pipelining = True
    SCRIPTS[script](smtp_server)

    conn = _connect(smtp_server)
    theirs = [outcome(lambda: conn.sendmail("f@x.org", list(TO), FIRST))]
    if conn.sock is None:  # a 421 closed it: a new one, as a worker would
        conn = _connect(smtp_server)
    theirs.append(outcome(lambda: conn.sendmail("f@x.org", list(TO), MESSAGE)))
    theirs.append(_then_a_clean_message(conn, lambda c, to: c.sendmail("f@x.org", to, MESSAGE)))
    conn.close()
    received_by_smtplib = [m.data for m in smtp_server.messages]

    said: list[bool] = []
    conn = _connect(smtp_server)
    ours = [outcome(lambda: _first_announcing(conn, TO, said, to=TO))]
    opened = bool(said) and conn.sock is not None
    if conn.sock is None:
        conn = _connect(smtp_server)
    ours.append(
        outcome(
            lambda: sendmail(
                conn, "f@x.org", list(TO), MESSAGE, before_commit=lambda: None, opened=opened
            )
        )
    )
    ours.append(
        _then_a_clean_message(
            conn, lambda c, to: sendmail(c, "f@x.org", to, MESSAGE, before_commit=lambda: None)
        )
    )
    conn.close()

    assert ours == theirs
    assert [m.data for m in smtp_server.messages][len(received_by_smtplib) :] == (
        received_by_smtplib
    )
    # The envelope went ahead whenever the first message reached its dot.
    reached_the_dot = script not in {"421-on-first-rcpt", "421-on-rcpt", "all-refused"} and (
        not script.startswith("mail-")
    )
    assert said == ([True] if reached_the_dot else [])
    assert smtp_server.chained == (1 if reached_the_dot else 0)


def test_the_next_envelope_goes_out_with_the_dot_and_its_replies_are_read_next(
    smtp_server,
) -> None:
    smtp_server.script.pipelining = True
    smtp_server.script.data_fail_times("554 5.7.1 Not this one", subject_contains="first")
    said: list[bool] = []
    with _connect(smtp_server) as conn:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            _first_announcing(conn, ("a@x.org",), said)
        assert refused.value.smtp_code == 554
        # The next message's MAIL, RCPT and DATA are answered already: no command is sent
        # for it, only its bytes after the 354.
        assert (
            sendmail(conn, "f@x.org", ["a@x.org"], MESSAGE, before_commit=lambda: None, opened=True)
            == {}
        )
    assert said == [True]
    assert smtp_server.chained == 1
    assert [m.subject for m in smtp_server.messages] == ["hi"]


def test_no_envelope_goes_ahead_without_pipelining(smtp_server) -> None:
    for offered, allowed in ((False, True), (True, False)):
        smtp_server.script.pipelining = offered
        said: list[bool] = []
        with _connect(smtp_server) as conn:
            _first_announcing(conn, ("a@x.org",), said, pipelining=allowed)
            sendmail(conn, "f@x.org", ["a@x.org"], MESSAGE, before_commit=lambda: None)
        assert said == []
    assert smtp_server.chained == 0
    assert smtp_server.count == 4


def test_a_next_envelope_that_cannot_be_written_is_left_to_its_own_message(smtp_server) -> None:
    """An address the connection cannot encode is the next message's error, not this one's."""
    smtp_server.script.pipelining = True
    said: list[bool] = []
    with _connect(smtp_server) as conn:
        assert _first_announcing(conn, ("jürgen@x.org",), said) == {}
    assert said == []
    assert smtp_server.count == 1


def test_the_message_goes_out_before_the_hook_and_its_dot_after() -> None:
    """The server reads the message while the hook waits for the previous outcome's write;
    only the final dot, which asks it to take the message, waits for the hook. A bare
    socket plays the server here, to see the bytes as they arrive."""
    listener = socket.create_server(("127.0.0.1", 0))
    received = bytearray()
    last_line = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 bare\r\n")
            lines.readline()  # EHLO
            conn.sendall(b"250-bare\r\n250 PIPELINING\r\n")
            for _ in range(3):  # MAIL, RCPT, DATA
                lines.readline()
            conn.sendall(b"250 ok\r\n250 ok\r\n354 go on\r\n")
            while (line := lines.readline()) != b".\r\n":
                received.extend(line)
                if line == b"body\r\n":
                    last_line.set()
            conn.sendall(b"250 taken\r\n")
            lines.readline()  # QUIT
            conn.sendall(b"221 bye\r\n")

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    at_hook: list[bool] = []
    with smtplib.SMTP(*listener.getsockname(), timeout=5) as conn:
        sendmail(
            conn,
            "f@x.org",
            ["a@x.org"],
            MESSAGE,
            before_commit=lambda: at_hook.append(last_line.wait(5)),
        )
    server.join(5)
    listener.close()
    assert at_hook == [True]  # the whole message was there before the hook returned
    assert bytes(received).endswith(b"body\r\n")
