"""Putting messages on the queue, one or many, inside the caller's transaction.

Everything that can be decided about a message is decided here, once: it is validated (an
address or header that could never be sent is refused now, with a clear error, rather than
found by a worker later), its Message-ID and Date are pinned so every retry carries the same
ones, and for SMTP delivery it is rendered to bytes so that sending does no MIME work.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import formatdate, make_msgid
from typing import Any

from django.core.mail import EmailMessage
from django.core.mail.utils import DNS_NAME
from django.utils import timezone
from django.utils.encoding import force_str
from django.utils.functional import Promise

from . import compat, contents, inserting, signals, suppression
from .conf import MailroomSettings, get_settings
from .connections import is_smtp_alias
from .exceptions import BackendNotConfigured, InvalidMessage, SerializationError
from .models import Message, Priority, Status
from .new_rows import RowMaker
from .serialization import to_payload

logger = logging.getLogger(__name__)

_SUBJECT_LIMIT = Message._meta.get_field("subject").max_length or 255


def enqueue(
    message: EmailMessage,
    *,
    priority: Priority | str | int = Priority.NORMAL,
    send_at: datetime | None = None,
    expires_at: datetime | None = None,
    backend: str | None = None,
) -> Message:
    """Queue one message for delivery and return its row.

    The row is written through the default database connection, so it joins the caller's
    transaction: if that rolls back, nothing is queued and nothing will be sent.
    Raises InvalidMessage (and stores nothing) when the message could never be sent.
    """
    return enqueue_many(
        [message], priority=priority, send_at=send_at, expires_at=expires_at, backend=backend
    )[0]


def enqueue_many(
    messages: Iterable[EmailMessage],
    *,
    priority: Priority | str | int = Priority.NORMAL,
    send_at: datetime | None = None,
    expires_at: datetime | None = None,
    backend: str | None = None,
    skip_invalid: bool = False,
) -> list[Message]:
    """Queue many messages with one bulk insert.

    Every message is validated before anything is written: by default one invalid message
    refuses the whole call (InvalidMessage names its index); with ``skip_invalid`` the invalid
    ones are logged and left out, and the rest are queued.
    """
    settings = get_settings()
    alias = backend or settings.default_backend
    level = Priority.coerce(priority)
    now = timezone.now()
    prerender = settings.prerender and _smtp_bound(settings, alias)
    # Every message of one call is queued at the same instant, so they share one Date (the
    # email package would format the same second over and over).
    date = _date_header(now.timestamp())

    maker = RowMaker(
        priority=level, backend=alias, created_at=now, due_at=send_at or now, expires_at=expires_at
    )
    checked = _checked(messages, maker, date, prerender, skip_invalid)
    if not checked:
        return []
    rows = [item.row for item in checked]
    # One lookup for every recipient of the call. A suppressed recipient leaves the envelope;
    # a message left with none is stored as failed, so the caller still gets its row.
    suppression.apply_at_enqueue(rows)
    # The costly part of each row (payload, MIME) is made as the row is inserted: on
    # PostgreSQL while earlier rows stream to the server, which stores them meanwhile.
    created = inserting.insert(
        inserting.Unfinished(rows, _Finisher(checked, prerender, skip_invalid))
    )
    queued = [row for row in created if row.status == Status.QUEUED]
    if queued:
        signals.send_queued(queued)
    for row in created:
        if row.status == Status.FAILED:
            logger.info("mailroom: message %s stored as failed: %s", row.pk, row.reason)
            signals.send(
                signals.message_failed, Message, message=row, attempt=None, reason=row.reason
            )
    return created


# The last Date header made, by the second and local time zone it was made for: requests that
# enqueue one message each mostly fall in the same second as the one before.
_last_date: tuple[tuple[object, ...], str] = ((), "")


def _date_header(timestamp: float) -> str:
    """``formatdate(timestamp, localtime=True)``, which depends only on the whole second and
    on the process's time zone (which Django sets from TIME_ZONE, and tests change)."""
    global _last_date
    key = (int(timestamp), time.tzname, time.timezone, time.altzone)
    made_for, date = _last_date
    if made_for != key:
        date = formatdate(key[0], localtime=True)
        _last_date = (key, date)
    return date


# Whether an alias delivers over SMTP, for the settings object it was worked out under:
# answering it imports the backend's class, which one-message calls would repeat every time.
# A settings change makes get_settings() return a new object, which empties this.
_smtp_aliases: tuple[MailroomSettings | None, dict[str, bool]] = (None, {})


def _smtp_bound(settings: MailroomSettings, alias: str) -> bool:
    global _smtp_aliases
    cached_for, known = _smtp_aliases
    if cached_for is not settings:
        known = {}
        _smtp_aliases = (settings, known)
    if alias not in known:
        try:
            known[alias] = is_smtp_alias(alias)
        except BackendNotConfigured:
            # An unknown alias is not an enqueue error: the message waits, and the worker
            # pauses that alias with a reason an operator can read. Not remembered: it
            # may be a MAILERS alias, which can appear without the MAILROOM settings changing.
            return False
    return known[alias]


@dataclass(slots=True)
class _Checked:
    """A message that passed the cheap checks, and its row (without its content, payload and
    MIME, unless ``rendered``)."""

    index: int
    pinned: EmailMessage
    row: Message
    rendered: bool


def _checked(
    messages: Iterable[EmailMessage],
    maker: RowMaker,
    date: str,
    prerender: bool,
    skip_invalid: bool,
) -> list[_Checked]:
    """Every message checked (identity pinned, envelope, headers) before any is rendered:
    a message refused here refuses the call (or is skipped) before anything is looked up
    or written."""
    # A pre_init/post_init listener must see each row whole, as Message(...) makes it: then
    # each is rendered before its row is made, as it always was.
    eager = not maker.plain
    checked: list[_Checked] = []
    for index, message in enumerate(messages):
        try:
            pinned, row = _check(message, maker, date, prerender if eager else None)
        except InvalidMessage as exc:
            _refuse(exc, index, skip_invalid)
            continue
        checked.append(_Checked(index, pinned, row, rendered=eager))
    return checked


def _refuse(exc: InvalidMessage, index: int, skip_invalid: bool) -> None:
    """Name the message ``exc`` refuses; raise it, or log it when skipping the invalid."""
    exc.index = index
    if not skip_invalid:
        raise exc
    logger.warning("mailroom: message %d not queued: %s", index, exc)


class _Finisher:
    """``inserting.Unfinished``'s finish: the payload and the MIME bytes of a checked row.

    A message that cannot be stored or rendered refuses the call (InvalidMessage naming its
    index; the insert then stores nothing) or, with ``skip_invalid``, is left out.
    """

    def __init__(self, checked: list[_Checked], prerender: bool, skip_invalid: bool) -> None:
        self.checked = checked
        self.prerender = prerender
        self.skip_invalid = skip_invalid

    def __call__(self, position: int) -> bool:
        item = self.checked[position]
        if item.rendered:
            return True
        try:
            rendered = _rendered(item.pinned, self.prerender)
        except InvalidMessage as exc:
            _refuse(exc, item.index, self.skip_invalid)
            return False
        contents.attach(item.row, rendered["payload"], rendered["mime"])
        return True


def _check(
    message: EmailMessage, maker: RowMaker, date: str, prerender: bool | None
) -> tuple[EmailMessage, Message]:
    """The pinned copy of ``message`` and its row; rendered too unless ``prerender`` is None."""
    if not isinstance(message, EmailMessage):
        raise InvalidMessage(f"expected an EmailMessage, got {type(message).__name__}")
    pinned = _pin_identity(message, date)
    envelope_from, recipients = _envelope(pinned)
    _check_headers(pinned)
    rendered = None if prerender is None else _rendered(pinned, prerender)
    row = maker.make(
        message_id=pinned.extra_headers["Message-ID"],
        subject=force_str(pinned.subject)[:_SUBJECT_LIMIT],
        from_email=envelope_from,
        recipients=recipients,
    )
    if rendered is not None:
        contents.attach(row, rendered["payload"], rendered["mime"])
    return pinned, row


def _rendered(pinned: EmailMessage, prerender: bool) -> dict[str, Any]:
    """The row's payload and, for SMTP delivery, its MIME bytes (else None)."""
    try:
        payload = to_payload(pinned)
    except SerializationError as exc:
        raise InvalidMessage(f"message cannot be stored: {exc}") from exc
    mime = None
    if prerender:
        try:
            mime = compat.render_mime(pinned)
        except (ValueError, TypeError, LookupError) as exc:
            raise InvalidMessage(f"message cannot be rendered: {exc}") from exc
    return {"payload": payload, "mime": mime}


def _pin_identity(message: EmailMessage, date: str) -> EmailMessage:
    """A shallow copy of ``message`` whose Message-ID and Date are fixed now.

    The caller's object is left untouched. Django would otherwise make a new Message-ID at
    every render, so a retried message would look like a new one to its receivers.
    """
    pinned = _shallow_copy(message)
    headers = {str(k): v for k, v in message.extra_headers.items()}
    lower = {k.lower(): k for k in headers}
    if "message-id" in lower:
        headers["Message-ID"] = force_str(headers.pop(lower["message-id"]))
    else:
        headers["Message-ID"] = make_msgid(domain=DNS_NAME.get_fqdn())
    if "date" not in lower:
        headers["Date"] = date
    pinned.extra_headers = headers
    if isinstance(pinned.subject, Promise):
        pinned.subject = str(pinned.subject)
    return pinned


def _shallow_copy(message: EmailMessage) -> EmailMessage:
    """``copy.copy(message)``; for Django's own classes without copy's search for how to copy
    (measured: 0.4 against 1.8 microseconds a message). They define no copy hook
    (``__copy__``, ``__reduce_ex__``...) and no ``__slots__``: a shallow copy is a new instance
    sharing the same attribute values."""
    cls = type(message)
    if cls not in compat.DJANGO_MESSAGE_CLASSES:
        return copy.copy(message)
    pinned = cls.__new__(cls)
    pinned.__dict__.update(message.__dict__)
    return pinned


def _envelope(message: EmailMessage) -> tuple[str, list[str]]:
    recipients = message.recipients()
    if not recipients:
        raise InvalidMessage("message has no recipients (to, cc and bcc are all empty)")
    try:
        envelope_from = compat.envelope_address(message.from_email, message.encoding)
    except (ValueError, TypeError) as exc:
        raise InvalidMessage(f"invalid sender address {message.from_email!r}: {exc}") from exc
    prepared: list[str] = []
    for address in recipients:
        try:
            prepared.append(compat.envelope_address(address, message.encoding))
        except (ValueError, TypeError) as exc:
            raise InvalidMessage(f"invalid recipient address {address!r}: {exc}") from exc
    return envelope_from, prepared


def _check_headers(message: EmailMessage) -> None:
    # A CR or LF in a header value is header injection; Django refuses it at render time, but
    # for messages that are not rendered now (ESP delivery) we must refuse it here.
    values: Sequence[tuple[str, object]] = [
        ("Subject", message.subject),
        *message.extra_headers.items(),
    ]
    for name, value in values:
        text = force_str(value)
        if "\n" in text or "\r" in text:
            raise InvalidMessage(f"header {name!r} contains a newline: {text[:80]!r}")
        if "\n" in name or "\r" in name or ":" in name:
            raise InvalidMessage(f"invalid header name {name!r}")
