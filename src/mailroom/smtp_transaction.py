"""One SMTP mail transaction, with a hook just before the message is committed.

This is ``smtplib.SMTP.sendmail`` taken apart at one point: after the message's bytes have
gone out and before the final ``.`` that asks the server to take responsibility for it.
mailroom uses that moment to make sure the previous message's outcome is written down, so a
worker that dies can only ever leave one accepted-but-unrecorded message behind, while the
write still overlaps the MAIL, RCPT and DATA exchange of the next message.

Everything else, replies, RSET after a refusal, closing after a 421, the exceptions raised
and the per-recipient refusals returned, is exactly what ``sendmail`` does, so classification
sees the same outcomes either way.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
from collections.abc import Callable, Sequence

CRLF = b"\r\n"
_LEADING_DOT = re.compile(rb"(?m)^\.")


def sendmail(
    conn: smtplib.SMTP,
    from_addr: str,
    to_addrs: Sequence[str],
    message: bytes,
    *,
    before_commit: Callable[[], None],
) -> dict[str, tuple[int, bytes]]:
    """Send ``message``; call ``before_commit`` just before the final dot.

    Returns the recipients refused (as ``sendmail`` does); raises what ``sendmail`` raises.
    If ``before_commit`` raises, the transaction is abandoned (the connection is closed before
    the dot, so the server discards the message) and the exception propagates.
    """
    conn.ehlo_or_helo_if_needed()
    options = [f"size={len(message)}"] if conn.does_esmtp and conn.has_extn("size") else []
    code, reply = conn.mail(from_addr, options)
    if code != 250:
        _abandon(conn, code)
        raise smtplib.SMTPSenderRefused(code, reply, from_addr)
    refused: dict[str, tuple[int, bytes]] = {}
    for address in to_addrs:
        code, reply = conn.rcpt(address)
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
    # The body and the final dot now go out as two writes; without TCP_NODELAY, Nagle's
    # algorithm would hold the small second one back until the body is acknowledged
    # (tens of milliseconds with delayed ACKs) for every message.
    if conn.sock is not None:
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = _LEADING_DOT.sub(b"..", message)
    if body[-2:] != CRLF:
        body += CRLF
    conn.send(body)
    try:
        before_commit()
    except BaseException:
        conn.close()
        raise
    conn.send(b"." + CRLF)
    code, reply = conn.getreply()
    if code != 250:
        _abandon(conn, code)
        raise smtplib.SMTPDataError(code, reply)
    return refused


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
