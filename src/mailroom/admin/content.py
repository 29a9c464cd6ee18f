"""What an operator may see of a stored message: its bodies, headers and attachments.

Everything is read from the message rebuilt by :func:`mailroom.delivery.rebuild`, never from the
JSON directly, so the admin shows exactly what a worker would send. Pure: no database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message as MIMEMessage
from typing import Any

from django.core.mail import EmailMessage

from mailroom.delivery import rebuild
from mailroom.exceptions import UndecodableMessage
from mailroom.models import Message

# A declared MIME type we are willing to echo in a Content-Type header; anything else is served
# as application/octet-stream.
# For fullmatch: with match, "$" would let a trailing newline through into the Content-Type.
_MIMETYPE = re.compile(r"[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*")
_UNSAFE_FILENAME = re.compile(r"[\x00-\x1f\x7f/\\]")


@dataclass(frozen=True, kw_only=True)
class StoredAttachment:
    index: int
    filename: str
    mimetype: str
    content: bytes

    @property
    def size(self) -> int:
        return len(self.content)


@dataclass(frozen=True, kw_only=True)
class StoredContent:
    """The readable parts of one queued message."""

    text: str
    #: The HTML body (the HTML alternative, or the body itself when it is HTML), if any.
    html: str | None
    headers: tuple[tuple[str, str], ...]
    attachments: tuple[StoredAttachment, ...]


def read_content(row: Message) -> StoredContent:
    """The stored message's parts; UndecodableMessage if the row cannot be rebuilt."""
    message = rebuild(row)
    text, html = _bodies(message)
    return StoredContent(
        text=text,
        html=html,
        headers=_headers(message),
        attachments=tuple(
            _attachment(index, item) for index, item in enumerate(message.attachments)
        ),
    )


def read_attachment(row: Message, index: int) -> StoredAttachment | None:
    """Attachment ``index`` of the stored message, or None if it has no such attachment."""
    try:
        attachments = rebuild(row).attachments
    except UndecodableMessage:
        return None
    if not 0 <= index < len(attachments):
        return None
    return _attachment(index, attachments[index])


def _bodies(message: EmailMessage) -> tuple[str, str | None]:
    body = _as_text(message.body)
    alternatives = [
        (_as_text(content), str(mimetype))
        for content, mimetype in getattr(message, "alternatives", ())
    ]
    if message.content_subtype == "html":
        plain = next((c for c, m in alternatives if m.startswith("text/plain")), "")
        return plain, body
    html = next((c for c, m in alternatives if m.startswith("text/html")), None)
    return body, html


def _headers(message: EmailMessage) -> tuple[tuple[str, str], ...]:
    headers = [
        ("From", str(message.from_email or "")),
        ("To", ", ".join(message.to)),
        ("Cc", ", ".join(message.cc)),
        ("Bcc", ", ".join(message.bcc)),
        ("Reply-To", ", ".join(message.reply_to)),
        ("Subject", str(message.subject)),
        *((str(name), str(value)) for name, value in message.extra_headers.items()),
    ]
    return tuple((name, value) for name, value in headers if value)


def _attachment(index: int, item: Any) -> StoredAttachment:
    if isinstance(item, MIMEMessage):  # a MIMEPart or legacy MIMEBase attachment
        filename, mimetype, content = item.get_filename(), item.get_content_type(), _part(item)
    else:  # EmailAttachment(filename, content, mimetype)
        filename, content, mimetype = item
        content = _as_bytes(content)
    return StoredAttachment(
        index=index,
        filename=_safe_filename(filename, index),
        mimetype=mimetype if isinstance(mimetype, str) and _MIMETYPE.fullmatch(mimetype) else "",
        content=content,
    )


def _part(part: MIMEMessage) -> bytes:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload(0)
        return inner.as_bytes() if isinstance(inner, MIMEMessage) else b""
    if part.is_multipart():
        return part.as_bytes()
    decoded = part.get_payload(decode=True)
    return decoded if isinstance(decoded, bytes) else b""


def _as_bytes(content: object) -> bytes:
    if isinstance(content, bytes):
        return content
    if isinstance(content, MIMEMessage):  # an attached message
        return content.as_bytes()
    return str(content).encode("utf-8")


def _as_text(content: object) -> str:
    if isinstance(content, bytes):
        return content.decode("utf-8", "replace")
    return str(content)


def _safe_filename(filename: object, index: int) -> str:
    # The name comes from whoever wrote the message: keep it out of paths and header syntax.
    cleaned = _UNSAFE_FILENAME.sub("_", filename).strip(" .") if isinstance(filename, str) else ""
    return cleaned or f"attachment-{index + 1}"
