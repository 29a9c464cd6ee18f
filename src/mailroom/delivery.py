"""Sending a batch of messages through one real backend, capturing what happened to each.

One :class:`DeliverySession` per delivery alias per batch: the backend's connection is opened
once and reused for every message. Each message is its own ``send`` so that an exception
belongs to that message alone (Django's ``send_messages`` abandons the rest of a list at the
first exception).

For Django's own SMTP backend, mailroom drives the backend's ``smtplib`` connection directly
with the bytes rendered at enqueue. That does no MIME work at send time, and it is the only way
to see the per-recipient refusals that ``sendmail`` returns (Django's backend discards them,
so a partially refused message would count as sent).
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Callable, Mapping
from typing import Any

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from . import compat, contents
from .batch import RecordingFailed
from .conf import get_settings
from .connections import open_backend, uses_smtp_fast_path
from .loading import mime_at_hand, read_mime
from .models import Message
from .outcomes import DeliveryResult
from .serialization import from_payload
from .smtp_transaction import Envelope, sendmail

logger = logging.getLogger(__name__)


def _nothing() -> None:
    return None


class DeliverySession:
    """An open connection to one delivery backend, for the length of one batch."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.backend: BaseEmailBackend | None = None
        self.fast_path = False
        self.pipelining = True
        # The message whose envelope went out after the last message's dot, and that
        # envelope: its replies are still to be read (smtp_transaction, "then").
        self._ahead: tuple[int, Envelope] | None = None

    @property
    def announced(self) -> bool:
        """Whether the next message's envelope went out with the last message's dot."""
        return self._ahead is not None

    def open(self) -> None:
        """Create the backend and connect. Raises whatever the backend raises."""
        self.backend = open_backend(self.alias)
        self.fast_path = uses_smtp_fast_path(self.backend)
        self.pipelining = get_settings().smtp_pipelining
        self.backend.open()

    def still_open(self) -> bool:
        """For a session kept from the last batch: whether its SMTP connection still answers.

        Servers drop idle connections; a NOOP (one round trip per batch) finds out before a
        message would, so a closed connection is reopened instead of counted as an outage.
        """
        connection = getattr(self.backend, "connection", None)
        if not self.fast_path or connection is None or self._ahead is not None:
            # With an envelope sent ahead the server may be reading a message: a NOOP would
            # be one of its lines. Such a connection is closed (see close) and made anew.
            return False
        try:
            return bool(connection.noop()[0] == 250)
        except (smtplib.SMTPException, OSError):
            return False

    def close(self) -> None:
        if self.backend is None:
            return
        if self._ahead is not None:
            self._ahead = None
            # The server may have said 354 to the envelope sent ahead and be reading that
            # message's bytes: a QUIT would be taken for one of them, and its reply never
            # come. Closing the socket ends the transaction with nothing sent.
            connection = getattr(self.backend, "connection", None)
            if connection is not None:
                connection.close()
        try:
            self.backend.close()
        except Exception:
            # The batch's outcomes are already known; a failing QUIT changes none of them.
            logger.debug("mailroom: closing backend %r failed", self.alias, exc_info=True)

    def deliver(
        self,
        row: Message,
        *,
        before_commit: Callable[[], None] = _nothing,
        while_waiting: Callable[[], None] = _nothing,
        after_dot: Callable[[], None] = _nothing,
        following: Message | None = None,
    ) -> DeliveryResult:
        """Send ``row``; ``before_commit`` runs just before the server is asked to take it.

        ``while_waiting`` runs first, on the SMTP path while the server reads the message's
        first command, and ``after_dot`` (SMTP path only) while it reads the message. Any
        exception from the backend becomes the result. An exception from
        either hook (the previous outcome could not be written) is not the message's doing
        and propagates, as RecordingFailed.

        ``following`` is the message this session will deliver next, if known: on the SMTP
        path its envelope goes out with this message's final dot where the server pipelines
        (one round trip a message instead of two). Delivering any other message next is
        safe too: the connection is then made anew first.
        """
        recipients = tuple(row.pending)
        before_commit, while_waiting = _guarded(before_commit), _guarded(while_waiting)
        try:
            if self.fast_path:
                hooks = (before_commit, while_waiting, _guarded(after_dot))
                return self._deliver_smtp(row, recipients, *hooks, following)
            while_waiting()
            before_commit()
            return self._deliver_generic(row, recipients)
        except RecordingFailed:
            raise
        except Exception as exc:
            return DeliveryResult(recipients=recipients, error=exc)

    def _deliver_smtp(
        self,
        row: Message,
        recipients: tuple[str, ...],
        before_commit: Callable[[], None],
        while_waiting: Callable[[], None],
        after_dot: Callable[[], None],
        following: Message | None,
    ) -> DeliveryResult:
        backend: Any = self.backend
        stored = read_mime(contents.of(row))
        mime = stored if stored is not None else compat.render_mime(rebuild(row))
        envelope = Envelope(row.from_email, recipients, len(mime))
        opened = self._ahead == (row.pk, envelope)
        if self._ahead is not None and not opened:
            self.close()  # another message's envelope is waiting on the connection
        self._ahead = None
        if backend.connection is None:
            backend.open()
        then = self._envelope_of(following)
        ahead = None if following is None or then is None else (following.pk, then)

        def said_then() -> None:
            self._ahead = ahead

        try:
            refused = sendmail(
                backend.connection,
                row.from_email,
                list(recipients),
                mime,
                before_commit=before_commit,
                while_waiting=while_waiting,
                after_dot=after_dot,
                pipelining=self.pipelining,
                opened=opened,
                then=then,
                said_then=said_then,
            )
        except RecordingFailed:
            self.close()
            raise
        except Exception as exc:
            if not _connection_survives(exc) or backend.connection.sock is None:
                # After a 421 or a disconnect smtplib has closed the socket but Django still
                # holds the object; reusing it would fail every following message. The socket
                # is checked too: a refusal that leaves the dialogue usable as a rule can meet
                # a server that hangs up on the RSET, or on the end of a pipelined group.
                self.close()
            raise
        return DeliveryResult(recipients=recipients, refused=_normalise(refused))

    def _envelope_of(self, following: Message | None) -> Envelope | None:
        """``following``'s envelope, to send ahead, if its bytes are at hand (those of a
        large message are read later, and its SIZE needs their length)."""
        if following is None or not self.pipelining:
            return None
        mime = mime_at_hand(following)
        if mime is None:
            return None
        return Envelope(following.from_email, tuple(following.pending), len(mime))

    def _deliver_generic(self, row: Message, recipients: tuple[str, ...]) -> DeliveryResult:
        assert self.backend is not None
        message = rebuild(row)
        if set(recipients) != set(row.recipients):
            _restrict(message, set(recipients))
        sent = self.backend.send_messages([message])
        status = getattr(message, "anymail_status", None)
        esp_status, esp_id = _anymail_status(status)
        return DeliveryResult(
            recipients=recipients,
            sent_count=int(sent or 0),
            esp_status=esp_status,
            esp_message_id=esp_id,
        )


def _guarded(hook: Callable[[], None]) -> Callable[[], None]:
    """``hook``, with whatever it raises made a RecordingFailed (never the message's error)."""

    def run() -> None:
        try:
            hook()
        except RecordingFailed:
            raise
        except Exception as exc:
            raise RecordingFailed(f"writing an outcome failed: {exc}") from exc

    return run


def _connection_survives(exc: Exception) -> bool:
    """Whether smtplib left the session usable after ``exc`` (it sends RSET after a refusal).

    A refused recipient, sender or message body leaves the connection open, so the next
    message reuses it; a 421 (the server is closing) or anything else starts a new one.
    """
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code != 421 for code, _ in exc.recipients.values())
    if isinstance(exc, (smtplib.SMTPSenderRefused, smtplib.SMTPDataError)):
        return exc.smtp_code != 421
    return False


def rebuild(row: Message) -> EmailMessage:
    """The EmailMessage stored in ``row``; UndecodableMessage if it cannot be rebuilt."""
    return from_payload(contents.of(row).payload)


def _restrict(message: EmailMessage, keep: set[str]) -> None:
    # A retry for some recipients only: the others already have the message (or can never
    # get it), so they must not be sent it again.
    def kept(addresses: list[str]) -> list[str]:
        return [a for a in addresses if compat.envelope_address(a, message.encoding) in keep]

    message.to = kept(list(message.to))
    message.cc = kept(list(message.cc))
    message.bcc = kept(list(message.bcc))


def _normalise(refused: Mapping[str, tuple[int, bytes | str]]) -> dict[str, tuple[int, str]]:
    return {
        address: (int(code), text.decode("utf-8", "replace") if isinstance(text, bytes) else text)
        for address, (code, text) in (refused or {}).items()
    }


def _anymail_status(status: Any) -> tuple[dict[str, str] | None, str | None]:
    # Read the attributes, never repr() it: anymail_status's repr raises when some
    # recipients were rejected (message_id is then a set holding None).
    if status is None:
        return None, None
    recipients = getattr(status, "recipients", None) or {}
    per_recipient = {
        str(address): str(getattr(info, "status", "unknown"))
        for address, info in recipients.items()
    }
    message_id = getattr(status, "message_id", None)
    if isinstance(message_id, set):
        message_id = ", ".join(sorted(str(m) for m in message_id if m))
    return (per_recipient or None), (str(message_id) if message_id else None)
