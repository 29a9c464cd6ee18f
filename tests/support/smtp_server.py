"""A scriptable SMTP server for mailroom's tests, demo and benchmarks.

``ScriptedSMTPServer`` runs aiosmtpd on 127.0.0.1 in a background thread and records what it
accepts. Its ``script`` decides, even while the server runs, how it answers: refuse some
recipients (greylisting, unknown users), reject or drop the connection at end of data, refuse the
greeting or AUTH, answer slowly. It is a real socket and a real SMTP dialogue, so smtplib and
Django's SMTP backend behave exactly as they would against a production relay.

Run it as its own process for benchmarks and process tests::

    python tests/support/smtp_server.py --port 0 --count-only --delay 0.01

The port goes on the first line of stdout; on SIGTERM or SIGINT it prints its counts as one JSON
line and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email import policy
from email.parser import BytesHeaderParser
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"


@dataclass(frozen=True, kw_only=True)
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    message_id: str | None  # as in the header, angle brackets included
    subject: str | None


# A reply is a whole SMTP reply line, e.g. "451 4.7.1 Greylisted, try again later". A rule is a
# fixed reply or a callable returning one; a rule that gives None lets the command succeed.
RcptRule = str | Callable[[str, int], str | None]  # (address, attempt for that address)
DataRule = str | Callable[[Received, int], str | None]  # (message, attempt for its Message-ID)
MailFromRule = str | Callable[[str], str | None]  # (sender address)


class _FirstTimes:
    """A rule that answers ``reply`` to the first ``times`` calls it applies to, then None."""

    def __init__(
        self, reply: str, times: int, applies: Callable[[Any], bool] | None = None
    ) -> None:
        self._reply = reply
        self._left = times
        self._applies = applies
        self._lock = threading.Lock()

    def __call__(self, subject: Any, _attempt: int) -> str | None:
        if self._applies is not None and not self._applies(subject):
            return None
        with self._lock:
            if self._left <= 0:
                return None
            self._left -= 1
            return self._reply


class SMTPScript:
    """How the server answers. Tests may change any of it while the server runs.

    ``rcpt`` is keyed by the address exactly as the client gives it in RCPT TO. Plain
    attribute and dict item assignment are atomic, so the server thread never sees half a change.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Back to a well-behaved server that accepts everything at once."""
        self.greeting: str | None = None  # e.g. "421 4.3.2 Service not available"
        self.auth_reply: str | None = None  # answer every AUTH with this, e.g. "454 4.7.0 ..."
        self.mail_from: MailFromRule | None = None
        self.rcpt: dict[str, RcptRule] = {}
        self.data: DataRule | None = None  # the reply at end of data
        self.data_delay: float = 0.0  # seconds to wait before answering end of data
        # Offer PIPELINING (RFC 2920) in the EHLO reply. aiosmtpd reads commands a line at a
        # time, so it serves a pipelining client whether it offers the extension or not.
        self.pipelining = False
        # Close the connection, without a reply, when the client sends RSET (as after a
        # refusal): the client is left with a refusal to report and no connection.
        self.hang_up_on_rset = False
        with self._lock:
            self._drop_countdown: int | None = None
            self._drop_after_accepting = False

    def rcpt_fail_times(self, address: str, reply: str, times: int = 1) -> None:
        """Refuse ``address`` with ``reply`` on its next ``times`` RCPTs, then accept it."""
        self.rcpt[address] = _FirstTimes(reply, times)

    def data_fail_times(
        self, reply: str, times: int = 1, *, subject_contains: str | None = None
    ) -> None:
        """Answer end of data with ``reply`` for the next ``times`` messages (only those whose
        subject contains ``subject_contains``, if given), then accept."""

        def applies(message: Received) -> bool:
            return subject_contains is None or subject_contains in (message.subject or "")

        self.data = _FirstTimes(reply, times, applies)

    def drop_connection_after(self, n_messages: int, *, after_accepting: bool = False) -> None:
        """Let the next ``n_messages`` through, then close the connection at the following end of
        data without any reply (once).

        With ``after_accepting`` that message is recorded as received first: the reply was lost
        but the message went through, which is what turns a naive retry into a duplicate.
        """
        with self._lock:
            self._drop_countdown = n_messages
            self._drop_after_accepting = after_accepting

    def drop_next_data(self, *, after_accepting: bool = False) -> None:
        """Close the connection at the next end of data without replying (once)."""
        self.drop_connection_after(0, after_accepting=after_accepting)

    def _take_drop(self) -> bool | None:
        """At an end of data: None to carry on, else drop now (True: record the message first)."""
        with self._lock:
            if self._drop_countdown is None:
                return None
            if self._drop_countdown > 0:
                self._drop_countdown -= 1
                return None
            self._drop_countdown = None
            return self._drop_after_accepting


def _apply(rule: Any, *args: Any) -> str | None:
    reply: str | None = rule(*args) if callable(rule) else rule
    return reply


_HEADER_PARSER = BytesHeaderParser(policy=policy.default)
_END_OF_HEADERS = re.compile(rb"\r?\n\r?\n")


#: A Message-ID header on one line, as every sender under test writes it.
_MESSAGE_ID = re.compile(
    rb"^Message-ID:[ \t]*(\S[^\r\n]*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE
)


def _received(envelope: Envelope, *, keep_data: bool = True) -> Received:
    data: bytes = envelope.original_content or b""
    head = _END_OF_HEADERS.split(data, maxsplit=1)[0]
    if not keep_data:
        # Counting only (the benchmark's sink): the Message-ID is all that is needed, and
        # the email package's parser would cost the sink more CPU per message (~0.4 ms)
        # than the whole SMTP exchange, on the CPUs the senders measured also need.
        found = _MESSAGE_ID.search(head)
        return Received(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=b"",
            message_id=found.group(1).decode("ascii", "replace") if found else None,
            subject=None,
        )
    # Parse only the header block: tests push thousands of messages through here.
    headers = _HEADER_PARSER.parsebytes(head)
    message_id, subject = headers.get("Message-ID"), headers.get("Subject")
    return Received(
        mail_from=envelope.mail_from or "",
        rcpt_tos=tuple(envelope.rcpt_tos),
        data=data,
        message_id=str(message_id).strip() if message_id is not None else None,
        subject=str(subject) if subject is not None else None,
    )


class _Handler:
    """aiosmtpd handler hooks; they run on the server's event-loop thread."""

    def __init__(self, server: ScriptedSMTPServer) -> None:
        self.server = server

    async def handle_AUTH(self, smtp: SMTP, session: Session, envelope: Envelope, args: Any) -> Any:
        # MISSING hands over to aiosmtpd's own PLAIN/LOGIN handling, then to our authenticator.
        return self.server.script.auth_reply or MISSING

    async def handle_EHLO(
        self, smtp: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # this hook's duty, in aiosmtpd's 5-argument form
        if self.server.script.pipelining:
            responses.insert(-1, "250-PIPELINING")  # the last line is "250 HELP"
        return responses

    async def handle_MAIL(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> Any:
        # Commands already read past MAIL FROM, before its reply: the client pipelined them.
        buffered = getattr(getattr(smtp, "_reader", None), "_buffer", b"")
        if bytes(buffered[:4]).upper() == b"RCPT":
            self.server._note_pipelined()
        # Enforced here rather than with aiosmtpd's auth_required, which warns on every
        # connection when AUTH is allowed without TLS, as it must be for plaintext tests.
        if self.server.auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        return _apply(self.server.script.mail_from, address) or MISSING

    async def handle_RSET(self, smtp: SMTP, session: Session, envelope: Envelope) -> Any:
        if self.server.script.hang_up_on_rset:
            assert smtp.transport is not None
            smtp.transport.close()
            # Never reply: the close makes aiosmtpd's connection_lost() cancel this coroutine.
            await asyncio.get_running_loop().create_future()
        return MISSING

    async def handle_RCPT(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> Any:
        attempt = self.server._next_attempt("rcpt", address)
        return _apply(self.server.script.rcpt.get(address), address, attempt) or MISSING

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        # The next MAIL FROM already read with this message's final dot: the client sent the
        # next envelope ahead, in the same write (RFC 2920 lets content start a group).
        buffered = getattr(getattr(smtp, "_reader", None), "_buffer", b"")
        if bytes(buffered[:4]).upper() == b"MAIL":
            self.server._note_chained()
        script = self.server.script
        message = _received(envelope, keep_data=self.server.keep_data)
        if script.data_delay:
            await asyncio.sleep(script.data_delay)
        drop = script._take_drop()
        if drop is not None:
            if drop:
                self.server._record(message)
            assert smtp.transport is not None
            smtp.transport.close()
            # Never reply: the close makes aiosmtpd's connection_lost() cancel this coroutine.
            await asyncio.get_running_loop().create_future()
        attempt = self.server._next_attempt("data", message.message_id or "")
        reply = _apply(script.data, message, attempt)
        if reply:
            return reply
        self.server._record(message)
        return "250 2.0.0 OK queued"


class _Session(Session):
    # aiosmtpd itself sets this deprecated attribute on every successful AUTH and logs a
    # deprecation warning each time; keep the value, drop the noise.
    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class _ScriptedSMTP(SMTP):
    """aiosmtpd's SMTP session, with a replaceable greeting and connection bookkeeping."""

    event_handler: _Handler

    def _create_session(self) -> Session:
        return _Session(self.loop)

    async def _handle_client(self) -> None:
        # aiosmtpd has no hook for the greeting (``ident`` only changes the text after "220
        # host"), so a scripted greeting replaces the whole session: say it, then hang up.
        server = self.event_handler.server
        server._connection_opened(self)
        greeting = server.script.greeting
        if greeting is None:
            await super()._handle_client()
            return
        await self.push(greeting)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        self.event_handler.server._connection_closed(self)
        super().connection_lost(error)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _ScriptedSMTP(self.handler, **self.SMTP_kwargs)


def free_port(host: str = HOST) -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ScriptedSMTPServer:
    """An SMTP server on ``host:port`` that records what it accepts and follows ``script``.

    The port is fixed at construction, so ``stop()`` and ``start()`` simulate the server going
    down (connection refused) and coming back on the same address. Records survive a restart.
    ``keep_data=False`` keeps counts and Message-IDs but no messages, for very long runs.
    ``auth=(username, password)`` requires AUTH (PLAIN or LOGIN, without TLS); without it any
    credentials are accepted.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = HOST,
        keep_data: bool = True,
        data_delay: float = 0.0,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.host = host
        # Controller.start() connects to its own port to check the server answers, so it cannot
        # be given port 0: choose a free port ourselves.
        self.port = port or free_port(host)
        self.keep_data = keep_data
        self.auth = auth
        self.script = SMTPScript()
        self.script.data_delay = data_delay
        self._controller: _Controller | None = None
        self._lock = threading.Condition()
        self._live: set[_ScriptedSMTP] = set()  # touched only on the event-loop thread
        self.clear()

    # -- running ------------------------------------------------------------------------------

    def start(self) -> ScriptedSMTPServer:
        if self._controller is not None:
            return self
        # A fresh Controller each time: a stopped one has closed its event loop for good.
        controller = _Controller(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            # Without a name aiosmtpd calls socket.getfqdn() for every connection: slow DNS.
            server_hostname="mailroom-test-smtp",
            auth_require_tls=False,
            authenticator=self._authenticate,
        )
        controller.start()
        # start() opened, and waited for the greeting on, a connection of its own; it is
        # counted by now and was no client's.
        with self._lock:
            self._connections -= 1
        self._controller = controller
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is None:
            return
        # asyncio's Server.close() only stops listening; close the open sessions too, or a
        # client would keep talking to a server that is meant to be down.
        asyncio.run_coroutine_threadsafe(self._close_connections(), controller.loop).result(5)
        controller.stop()

    @property
    def running(self) -> bool:
        return self._controller is not None

    def __enter__(self) -> ScriptedSMTPServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType
    ) -> None:
        self.stop()

    # -- what was received ------------------------------------------------------------------

    @property
    def messages(self) -> list[Received]:
        if not self.keep_data:
            raise RuntimeError("this server counts messages but keeps none (keep_data=False)")
        with self._lock:
            return list(self._messages)

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    @property
    def recipient_count(self) -> int:
        with self._lock:
            return self._recipient_count

    @property
    def pipelined(self) -> int:
        """Mail transactions whose RCPT TO came with MAIL FROM, before its reply (RFC 2920)."""
        with self._lock:
            return self._pipelined

    @property
    def chained(self) -> int:
        """Ends of data that arrived with the next MAIL FROM behind them (the next envelope
        sent ahead, before this message's reply)."""
        with self._lock:
            return self._chained

    @property
    def connections(self) -> int:
        """Client connections made, including those turned away at the greeting."""
        with self._lock:
            return self._connections

    def message_ids(self) -> list[str]:
        """Each Message-ID as many times as it was accepted, in order of first arrival."""
        with self._lock:
            return list(self._message_ids.elements())

    def duplicate_message_ids(self) -> dict[str, int]:
        with self._lock:
            return {mid: n for mid, n in self._message_ids.items() if n > 1}

    def recipients_of(self, message_id: str) -> list[str]:
        """Every accepted recipient of the message(s) with this Message-ID."""
        return [rcpt for m in self.messages if m.message_id == message_id for rcpt in m.rcpt_tos]

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "messages": self._count,
                "recipients": self._recipient_count,
                "unique_message_ids": len(self._message_ids),
                "duplicates": sum(n - 1 for n in self._message_ids.values()),
                "connections": self._connections,
                "pipelined": self._pipelined,
                "chained": self._chained,
            }

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` messages were accepted; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._count >= count, timeout)

    def clear(self) -> None:
        """Forget everything received (the script stays)."""
        with self._lock:
            self._messages: list[Received] = []
            self._count = 0
            self._recipient_count = 0
            self._connections = 0
            self._pipelined = 0
            self._chained = 0
            self._message_ids: collections.Counter[str] = collections.Counter()
            self._attempts: collections.Counter[tuple[str, str]] = collections.Counter()

    # -- called from the event-loop thread ----------------------------------------------------

    def _record(self, message: Received) -> None:
        with self._lock:
            self._count += 1
            self._recipient_count += len(message.rcpt_tos)
            if message.message_id is not None:
                self._message_ids[message.message_id] += 1
            if self.keep_data:
                self._messages.append(message)
            self._lock.notify_all()

    def _note_pipelined(self) -> None:
        with self._lock:
            self._pipelined += 1

    def _note_chained(self) -> None:
        with self._lock:
            self._chained += 1

    def _next_attempt(self, command: str, key: str) -> int:
        with self._lock:
            self._attempts[command, key] += 1
            return self._attempts[command, key]

    def _connection_opened(self, session: _ScriptedSMTP) -> None:
        self._live.add(session)
        with self._lock:
            self._connections += 1

    def _connection_closed(self, session: _ScriptedSMTP) -> None:
        self._live.discard(session)

    async def _close_connections(self) -> None:
        for session in list(self._live):
            if session.transport is not None:
                session.transport.close()
        # The transports call connection_lost() (which closes the sockets) on the next loop
        # iteration, before this coroutine resumes.
        await asyncio.sleep(0)

    def _authenticate(
        self, smtp: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        given = (data.login, data.password) if isinstance(data, LoginPassword) else None
        success = self.auth is None or given == (self.auth[0].encode(), self.auth[1].encode())
        # handled=False makes aiosmtpd send "535 5.7.8" itself; its default (handled=True)
        # means "I replied already", and the client would wait for an answer for ever.
        return AuthResult(success=success, handled=False, auth_data=data)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run mailroom's scripted SMTP test server.")
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, default=0, help="0 (the default) picks a free port")
    parser.add_argument("--count-only", action="store_true", help="keep counts, not messages")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each DATA reply")
    parser.add_argument("--pipelining", action="store_true", help="offer PIPELINING (RFC 2920)")
    args = parser.parse_args(argv)

    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    server = ScriptedSMTPServer(
        args.port or None, host=args.host, keep_data=not args.count_only, data_delay=args.delay
    )
    server.script.pipelining = args.pipelining
    with server:
        print(server.port, flush=True)
        # A short timeout keeps the main thread returning to the interpreter, where signal
        # handlers run.
        while not stopping.wait(0.2):
            pass
    print(json.dumps(server.stats()), flush=True)


if __name__ == "__main__":
    main()
