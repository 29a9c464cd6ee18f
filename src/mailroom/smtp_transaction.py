"""One SMTP mail transaction, with a hook just before the message is committed.

This is ``smtplib.SMTP.sendmail`` taken apart at one point: after the server said 354 to
DATA and has the message's bytes, before the final ``.`` that asks it to take responsibility
for the message. mailroom uses that moment to make sure the previous message's outcome is
written down, so a worker that dies can only ever leave one accepted-but-unrecorded message
behind, while the write still overlaps the server reading the message.

Everything else, replies, RSET after a refusal, closing after a 421, the exceptions raised
and the per-recipient refusals returned, is exactly what ``sendmail`` does, so classification
sees the same outcomes either way.

Where the server offers PIPELINING (RFC 2920), MAIL FROM, the RCPT TOs and DATA go out as one
write and their replies are read after it, in order: one round trip where ``sendmail`` waits
for two plus one per recipient. The message's bytes still wait for the 354, as the RFC asks.
A refusal among the replies leaves the others to read, so they are all read before anything
else is said on the connection.

A session that knows which message comes next can go further: the next message's MAIL, RCPT
and DATA follow this message's bytes and final dot in the same write (``then``), since "the
actual transfer of message content is explicitly allowed to be the first 'command' in a
group" (RFC 2920, 3.1). The server answers the dot, then the next envelope; the next
``sendmail`` (``opened``) reads those replies instead of sending the commands. A message then
costs one round trip instead of two. Only the envelope goes ahead: the next message's bytes
and dot still wait for its 354 and for its own ``before_commit``.
"""

from __future__ import annotations

import contextlib
import functools
import smtplib
import socket
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .compat import PLAIN_ADDR_SPEC

CRLF = b"\r\n"
#: Past this many recipients the commands go one at a time: a pipelined group whose replies
#: the client does not read while it writes must fit the sockets' buffers (RFC 2920, 3.1).
PIPELINE_MAX_RECIPIENTS = 100


@dataclass(frozen=True)
class Envelope:
    """A message's MAIL FROM and RCPT TOs, and its size (for the SIZE extension)."""

    from_addr: str
    to_addrs: tuple[str, ...]
    size: int


def pipelines(conn: smtplib.SMTP, envelope: Envelope, *, pipelining: bool = True) -> bool:
    """Whether ``envelope``'s commands may go out as one group on ``conn`` (already greeted)."""
    return (
        pipelining
        and 0 < len(envelope.to_addrs) <= PIPELINE_MAX_RECIPIENTS
        and bool(conn.does_esmtp)
        and conn.has_extn("pipelining")
    )


def sendmail(
    conn: smtplib.SMTP,
    from_addr: str,
    to_addrs: Sequence[str],
    message: bytes,
    *,
    before_commit: Callable[[], None],
    while_waiting: Callable[[], None] | None = None,
    after_dot: Callable[[], None] | None = None,
    pipelining: bool = True,
    opened: bool = False,
    then: Envelope | None = None,
    said_then: Callable[[], None] | None = None,
) -> dict[str, tuple[int, bytes]]:
    """Send ``message``; call ``before_commit`` once its bytes are sent, before its dot.

    Returns the recipients refused (as ``sendmail`` does); raises what ``sendmail`` raises.
    If ``before_commit`` raises, the transaction is abandoned (the connection is closed before
    the message's dot, so the server discards it) and the exception propagates.

    ``while_waiting`` runs once MAIL FROM is on its way, before its reply is read, and
    ``after_dot`` once the message is, before the server's verdict is read: work done there
    (the previous message's bookkeeping) costs no time, since the server is busy meanwhile.
    If either raises, the connection is closed and the exception propagates.

    ``pipelining`` allows RFC 2920 pipelining where the server offers it.

    ``opened``: this message's envelope already went out after the previous message's dot (its
    ``then``), so its replies are read without sending anything first. ``then``: the next
    message's envelope, sent in the same write as this message's bytes if the connection
    pipelines it; ``said_then`` is called once it is written. Its replies are left unread
    for the next call, also when this message is refused at its dot; if the connection is
    closed instead, they are lost with it.
    """
    conn.ehlo_or_helo_if_needed()
    envelope = Envelope(from_addr, tuple(to_addrs), len(message))
    ahead = _ahead(conn, then, pipelining)
    commit = functools.partial(_commit, conn, before_commit, after_dot, ahead, said_then)
    if opened or pipelines(conn, envelope, pipelining=pipelining):
        return _pipelined(conn, envelope, message, while_waiting, opened, commit)
    mail = _mail_args(conn, envelope)
    # Every recipient quoted (and so checked: quoted refuses a line break) before anything is
    # sent: one refused half-way through the RCPTs would leave the server in a transaction
    # this call abandons. (A pipelined group is made whole before it is sent, and an
    # envelope sent ahead was made whole by the call before.)
    rcpts = [f"TO:{quoted(address)}" for address in to_addrs]
    # conn.mail(), with the wait for its reply put to use.
    conn.putcmd("mail", mail)
    _run(conn, while_waiting)
    # The message as it will go out after DATA, made while the server reads MAIL FROM.
    body = _dot_stuffed(message)
    code, reply = conn.getreply()
    if code != 250:
        _abandon(conn, code)
        raise smtplib.SMTPSenderRefused(code, reply, from_addr)
    refused: dict[str, tuple[int, bytes]] = {}
    for address, rcpt in zip(to_addrs, rcpts, strict=True):
        # conn.rcpt(), with the address quoted once per process rather than once per message.
        conn.putcmd("rcpt", rcpt)
        code, reply = conn.getreply()
        if code not in (250, 251):
            refused[address] = (code, reply)
        if code == 421:
            conn.close()
            raise smtplib.SMTPRecipientsRefused(refused)
    if len(refused) == len(to_addrs):
        _reset(conn)
        raise smtplib.SMTPRecipientsRefused(refused)
    conn.putcmd("data")
    code, reply = conn.getreply()
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)
    commit(body)
    return refused


def _ahead(conn: smtplib.SMTP, then: Envelope | None, pipelining: bool) -> bytes:
    """``then``'s commands, to follow this message's dot, or nothing."""
    if then is None or not pipelines(conn, then, pipelining=pipelining):
        return b""
    try:
        return _group(conn, then).encode(conn.command_encoding)
    except (ValueError, UnicodeError):
        # The next message's own fault (a line break, an address the connection cannot
        # encode): its own call meets it and reports it, not this one.
        return b""


def _mail_args(conn: smtplib.SMTP, envelope: Envelope) -> str:
    """MAIL FROM's arguments: the sender, and its size where the server takes SIZE."""
    size = f" size={envelope.size}" if conn.does_esmtp and conn.has_extn("size") else ""
    return f"FROM:{quoted(envelope.from_addr)}{size}"


def _group(conn: smtplib.SMTP, envelope: Envelope) -> str:
    """MAIL, the RCPTs and DATA, as one pipelined group."""
    commands = [_command("mail", _mail_args(conn, envelope))]
    commands += [_command("rcpt", f"TO:{quoted(address)}") for address in envelope.to_addrs]
    commands.append(_command("data", ""))
    return "".join(commands)


def _pipelined(
    conn: smtplib.SMTP,
    envelope: Envelope,
    message: bytes,
    while_waiting: Callable[[], None] | None,
    opened: bool,
    commit: Callable[[bytes], None],
) -> dict[str, tuple[int, bytes]]:
    """The same transaction with MAIL, RCPT and DATA in one write (RFC 2920), or, if
    ``opened``, already written after the previous message."""
    from_addr, to_addrs = envelope.from_addr, envelope.to_addrs
    if not opened:
        conn.send(_group(conn, envelope))
    _run(conn, while_waiting)
    body = _dot_stuffed(message)
    mail_code, mail_reply = conn.getreply()
    if mail_code == 421:
        conn.close()
        raise smtplib.SMTPSenderRefused(mail_code, mail_reply, from_addr)
    refused: dict[str, tuple[int, bytes]] = {}
    for address in to_addrs:
        code, reply = conn.getreply()
        if code == 421:
            conn.close()
            if mail_code != 250:
                raise smtplib.SMTPSenderRefused(mail_code, mail_reply, from_addr)
            refused[address] = (code, reply)
            raise smtplib.SMTPRecipientsRefused(refused)
        if code not in (250, 251):
            refused[address] = (code, reply)
    data_code, data_reply = conn.getreply()
    if mail_code != 250 or len(refused) == len(to_addrs):
        # No transaction to send a message in. A server that said 354 all the same is owed
        # the end of one (an empty message, which it refuses for want of recipients).
        if data_code == 354:
            conn.send(b".\r\n")
            data_code, _ = conn.getreply()
        if data_code == 421:
            conn.close()
        else:
            _reset(conn)
        if mail_code != 250:
            raise smtplib.SMTPSenderRefused(mail_code, mail_reply, from_addr)
        raise smtplib.SMTPRecipientsRefused(refused)
    if data_code != 354:
        raise smtplib.SMTPDataError(data_code, data_reply)
    commit(body)
    return refused


def _command(cmd: str, args: str) -> str:
    # What conn.putcmd() would send, with its refusal of line breaks in a command.
    line = f"{cmd} {args}".strip()
    if "\r" in line or "\n" in line:
        raise ValueError("command and arguments contain prohibited newline characters")
    return line + "\r\n"


def _dot_stuffed(message: bytes) -> bytes:
    # What smtplib's re.sub(rb"(?m)^\.", b"..", ...) does (a line starts at the start of the
    # message and after every LF), with bytes.replace, which scans with memchr and returns
    # the very object where there is nothing to replace: measured on a 1 MiB attachment 7.6
    # ms against 1.2, on a 1 KiB message 9.5 us against 1.3.
    body = message.replace(b"\n.", b"\n..")
    if body[:1] == b".":
        body = b"." + body
    return body + (b".\r\n" if body[-2:] == CRLF else b"\r\n.\r\n")


def _commit(
    conn: smtplib.SMTP,
    before_commit: Callable[[], None],
    after_dot: Callable[[], None] | None,
    ahead: bytes,
    said_ahead: Callable[[], None] | None,
    body: bytes,
) -> None:
    """After the 354: the message, the hook, then its dot (and the next envelope, if any),
    then the server's verdict."""
    _no_delay(conn)
    # All of the message but its final dot: the server reads it while the hook waits for
    # the previous outcome's write. Without its dot it is not the server's yet, and if the
    # hook fails the connection is closed before the dot, so the server discards it.
    conn.send(memoryview(body)[: -len(_DOT)])
    try:
        before_commit()
    except BaseException:
        conn.close()
        raise
    # The dot, with the next envelope behind it in the same write.
    conn.send(_DOT + ahead)
    if ahead and said_ahead is not None:
        said_ahead()
    _run(conn, after_dot)
    code, reply = conn.getreply()
    if code != 250:
        if not ahead or code == 421:
            _abandon(conn, code)
        # Else no RSET: the dot ended this transaction whatever its reply (RFC 5321, 4.1.1.4),
        # and the next envelope's replies come next on the connection, for the next call.
        raise smtplib.SMTPDataError(code, reply)


#: The end of a message's data, after the CRLF that ends its last line (_dot_stuffed).
_DOT = b".\r\n"

#: The sockets TCP_NODELAY is set on.
_no_delay_set: weakref.WeakSet[Any] = weakref.WeakSet()


def _no_delay(conn: smtplib.SMTP) -> None:
    """Send small writes at once: a message's dot follows its bytes by a separate write, and
    with Nagle's algorithm the kernel would hold it until the bytes were acknowledged, which
    a server delays (delayed ACK) when it has nothing to answer yet. mailroom's writes are
    whole groups already, so nothing is split more than before."""
    sock = conn.sock
    if sock is None or sock in _no_delay_set:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    _no_delay_set.add(sock)


def quoted(address: str) -> str:
    """``smtplib.quoteaddr(address)``, without its cost for the common, plain address (which
    quoteaddr returns unchanged in angle brackets: tests/unit/test_smtp_transaction.py).

    Raises ValueError for an address with a line break, which quoteaddr would cut short
    there ("a@x.org\r\nRSET" is "<a@x.org>"): the message would go to another address than
    the one stored, without a word. (enqueue refuses such an address; a row written some
    other way can still hold one.)
    """
    if PLAIN_ADDR_SPEC.fullmatch(address):
        return f"<{address}>"
    if "\r" in address or "\n" in address:
        raise ValueError(f"the address {address!r} contains a line break")
    return _quoteaddr(address)


@functools.lru_cache(maxsize=4096)
def _quoteaddr(address: str) -> str:
    # smtplib.quoteaddr parses the address with the email package each time it is called
    # (some 50 microseconds): a run sends to the same addresses again and again.
    return smtplib.quoteaddr(address)


def _run(conn: smtplib.SMTP, hook: Callable[[], None] | None) -> None:
    if hook is None:
        return
    try:
        hook()
    except BaseException:
        conn.close()
        raise


def _abandon(conn: smtplib.SMTP, code: int) -> None:
    # As sendmail does: a 421 means the server is closing; anything else, reset and go on.
    if code == 421:
        conn.close()
    else:
        _reset(conn)


def _reset(conn: smtplib.SMTP) -> None:
    # sendmail ignores a disconnect here too: the exception about to be raised says more.
    with contextlib.suppress(smtplib.SMTPServerDisconnected):
        conn.rset()
