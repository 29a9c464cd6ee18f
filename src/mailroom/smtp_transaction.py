"""One SMTP mail transaction, with a hook just before the message is committed.

This is ``smtplib.SMTP.sendmail`` taken apart at one point: after the server said 354 to
DATA and before the message's bytes and the final ``.`` that asks it to take responsibility
for the message. mailroom uses that moment to make sure the previous message's outcome is
written down, so a worker that dies can only ever leave one accepted-but-unrecorded message
behind, while the write still overlaps the MAIL, RCPT and DATA exchange of the next message.

Everything else, replies, RSET after a refusal, closing after a 421, the exceptions raised
and the per-recipient refusals returned, is exactly what ``sendmail`` does, so classification
sees the same outcomes either way.
"""

from __future__ import annotations

import contextlib
import functools
import re
import smtplib
from collections.abc import Callable, Sequence

from .compat import PLAIN_ADDR_SPEC

CRLF = b"\r\n"
_LEADING_DOT = re.compile(rb"(?m)^\.")


def sendmail(
    conn: smtplib.SMTP,
    from_addr: str,
    to_addrs: Sequence[str],
    message: bytes,
    *,
    before_commit: Callable[[], None],
    while_waiting: Callable[[], None] | None = None,
    after_dot: Callable[[], None] | None = None,
) -> dict[str, tuple[int, bytes]]:
    """Send ``message``; call ``before_commit`` once the server is ready for its bytes.

    Returns the recipients refused (as ``sendmail`` does); raises what ``sendmail`` raises.
    If ``before_commit`` raises, the transaction is abandoned (the connection is closed before
    the message's bytes and dot, so the server discards it) and the exception propagates.

    ``while_waiting`` runs once MAIL FROM is on its way, before its reply is read, and
    ``after_dot`` once the message is, before the server's verdict is read: work done there
    (the previous message's bookkeeping) costs no time, since the server is busy meanwhile.
    If either raises, the connection is closed and the exception propagates.
    """
    conn.ehlo_or_helo_if_needed()
    options = [f"size={len(message)}"] if conn.does_esmtp and conn.has_extn("size") else []
    # conn.mail(), with the wait for its reply put to use.
    conn.putcmd("mail", f"FROM:{quoted(from_addr)}{''.join(' ' + o for o in options)}")
    _run(conn, while_waiting)
    # The message as it will go out after DATA, made while the server reads MAIL FROM.
    body = _LEADING_DOT.sub(b"..", message)
    body += b".\r\n" if body[-2:] == CRLF else b"\r\n.\r\n"
    code, reply = conn.getreply()
    if code != 250:
        _abandon(conn, code)
        raise smtplib.SMTPSenderRefused(code, reply, from_addr)
    refused: dict[str, tuple[int, bytes]] = {}
    for address in to_addrs:
        # conn.rcpt(), with the address quoted once per process rather than once per message.
        conn.putcmd("rcpt", f"TO:{quoted(address)}")
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
    try:
        before_commit()
    except BaseException:
        conn.close()
        raise
    # The body and its final dot go out in one write, as sendmail sends them: one segment
    # for the server to read rather than two.
    conn.send(body)
    _run(conn, after_dot)
    code, reply = conn.getreply()
    if code != 250:
        _abandon(conn, code)
        raise smtplib.SMTPDataError(code, reply)
    return refused


def quoted(address: str) -> str:
    """``smtplib.quoteaddr(address)``, without its cost for the common, plain address (which
    quoteaddr returns unchanged in angle brackets: tests/unit/test_smtp_transaction.py)."""
    if PLAIN_ADDR_SPEC.fullmatch(address):
        return f"<{address}>"
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
