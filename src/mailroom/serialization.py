"""Turn a Django ``EmailMessage`` into plain JSON and back, so a queued message survives restarts.

The payload is a JSON object with a format version (``"v": 1``) holding data only, never code or
class paths: Django renamed private attributes, namedtuple types and classes across 5.2, 6.0 and
6.1, so a dump of an object's internals breaks on upgrade, and loading one from a database that
someone else can write runs their code. Rebuilding goes through the public constructor of a class
taken from a fixed table. Binary content is base64 under an explicit key (``{"b64": ...}`` next
to ``{"text": ...}``), never guessed. MIME objects (``MIMEPart``, legacy ``MIMEBase``, attached
messages) are stored as the bytes they render to and parsed back under the same policy family, so
the rebuilt message renders the same bytes. Pure: no database, no network.
"""

from __future__ import annotations

import base64
import datetime
import email
import email.policy
from collections.abc import Callable, Mapping
from email.charset import Charset
from email.generator import BytesGenerator
from email.message import Message, MIMEPart
from email.mime.base import MIMEBase
from email.policy import EmailPolicy, Policy, compat32
from email.utils import format_datetime
from io import BytesIO
from typing import Any, cast

from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.message import EmailAlternative, EmailAttachment
from django.utils.encoding import force_str
from django.utils.functional import Promise

from mailroom import anymail_extras
from mailroom.anymail_extras import ANYMAIL_ATTRIBUTES
from mailroom.compat import DJANGO_6
from mailroom.exceptions import SerializationError, UndecodableMessage
from mailroom.payload_checks import field as _field
from mailroom.payload_checks import item as _item
from mailroom.payload_checks import optional_str as _optional_str

__all__ = ["ANYMAIL_ATTRIBUTES", "PAYLOAD_VERSION", "from_payload", "to_payload"]

PAYLOAD_VERSION = 1

# Django 5.2's undocumented subtype knobs and their defaults; Django 6.0 removed them.
_LEGACY_SUBTYPES = {"mixed_subtype": "mixed", "alternative_subtype": "alternative"}


def _anymail_message_class() -> type[EmailMessage]:
    # Imported only when a row asks for it: anymail is an optional dependency.
    try:
        from anymail.message import AnymailMessage
    except ImportError as error:
        raise UndecodableMessage(
            "the message was stored as an AnymailMessage, but django-anymail is not installed"
        ) from error
    return cast("type[EmailMessage]", AnymailMessage)


# The only classes from_payload builds. A stored name is looked up here and nowhere else: text from
# the database is never imported, so a tampered row cannot name an arbitrary callable.
_CLASSES: dict[str, Callable[[], type[EmailMessage]]] = {
    "EmailMessage": lambda: EmailMessage,
    "EmailMultiAlternatives": lambda: EmailMultiAlternatives,
    "AnymailMessage": _anymail_message_class,
}


class _ParsedMIMEBase(MIMEBase):
    """A legacy ``MIMEBase`` part rebuilt by the parser, which supplies the headers itself."""

    def __init__(self, *, policy: Policy[Any] | None = None) -> None:
        # MIMEBase.__init__ would add a second Content-Type and MIME-Version; skip it. Django 5.2
        # only passes an attachment through untouched if it is a MIMEBase, hence the subclass.
        Message.__init__(self, policy=policy or compat32)


# How each stored MIME kind is parsed back: under the policy family it was written with (see
# _mime_bytes), into the class Django expects ("default" and "compat32" are attached messages).
_MIME_PARSERS: dict[str, Callable[[bytes], Message]] = {
    "mimepart": lambda raw: email.message_from_bytes(raw, MIMEPart, policy=email.policy.default),
    "mimebase": lambda raw: email.message_from_bytes(raw, _ParsedMIMEBase, policy=compat32),
    "default": lambda raw: email.message_from_bytes(raw, policy=email.policy.default),
    "compat32": lambda raw: email.message_from_bytes(raw),
}


def to_payload(message: EmailMessage) -> dict[str, Any]:
    """Return a JSON-able dict from which :func:`from_payload` rebuilds an equivalent message."""
    payload: dict[str, Any] = {
        "v": PAYLOAD_VERSION,
        "class": _class_name(message),
        "subject": str(message.subject),  # may be a lazy translation
        "body": _text(message.body, "the body"),
        "content_subtype": str(message.content_subtype),
        "from_email": None if message.from_email is None else str(message.from_email),
        # str() is what Django itself applies when it writes these headers.
        "to": [str(address) for address in message.to],
        "cc": [str(address) for address in message.cc],
        "bcc": [str(address) for address in message.bcc],
        "reply_to": [str(address) for address in message.reply_to],
        "headers": {
            str(name): _header_text(value) for name, value in message.extra_headers.items()
        },
        "encoding": _encoding_name(message.encoding),
        "alternatives": _encode_alternatives(message),
        "attachments": [
            _encode_attachment(attachment, f"attachment {index}")
            for index, attachment in enumerate(message.attachments)
        ],
    }
    for name, default in _LEGACY_SUBTYPES.items():
        # Set on the instance, or changed by a subclass that is about to be stored as its base.
        if name in vars(message) or getattr(type(message), name, default) != default:
            payload[name] = str(getattr(message, name))
    extras = anymail_extras.encode(message)
    if extras:
        payload["anymail"] = extras
    return payload


def _class_name(message: EmailMessage) -> str:
    # A user subclass is stored as its nearest allowed base: its data survives, its code cannot.
    for cls in type(message).__mro__:
        if cls is EmailMultiAlternatives or cls is EmailMessage:
            return cls.__name__
        if (cls.__module__, cls.__qualname__) == ("anymail.message", "AnymailMessage"):
            return "AnymailMessage"
    raise SerializationError(f"{type(message).__name__} is not a django.core.mail.EmailMessage")


def _text(value: object, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (str, Promise)):
        return str(value)
    raise SerializationError(f"{where} is a {type(value).__name__}, not text")


def _header_text(value: object) -> str:
    # Django 6 hands a datetime straight to the email package, which writes it as an RFC 5322
    # date; storing that rendering keeps the header identical. Django 5.2 applies str().
    if isinstance(value, datetime.datetime) and DJANGO_6:
        return format_datetime(value)
    return force_str(value)


def _encoding_name(encoding: object) -> str | None:
    # Django 5.2 also accepts an email.charset.Charset; Django 6 only its name.
    if isinstance(encoding, Charset):
        return str(encoding.input_charset)
    if encoding is None or isinstance(encoding, str):
        return encoding
    raise SerializationError(f"the encoding is a {type(encoding).__name__}, not a charset name")


def _encode_alternatives(message: EmailMessage) -> list[dict[str, Any]]:
    if not isinstance(message, EmailMultiAlternatives):
        return []  # a plain EmailMessage never renders alternatives
    encoded = []
    for index, (content, mimetype) in enumerate(message.alternatives):
        where = f"alternative {index}"
        encoded.append(
            {"mimetype": _text(mimetype, where), "content": _encode_content(content, where)}
        )
    return encoded


def _encode_attachment(attachment: object, where: str) -> dict[str, Any]:
    # MIMEPart (which email.message.EmailMessage also is) and MIMEBase are disjoint classes.
    if isinstance(attachment, MIMEPart):
        return {"kind": "mimepart", "b64": _b64(_mime_bytes(attachment))}
    if isinstance(attachment, MIMEBase):
        return {"kind": "mimebase", "b64": _b64(_mime_bytes(attachment))}
    if isinstance(attachment, tuple) and len(attachment) == 3:
        filename, content, mimetype = attachment
        if not (filename is None or isinstance(filename, str)) or not isinstance(mimetype, str):
            raise SerializationError(f"{where} needs a str or None filename and a str mimetype")
        return {
            "kind": "file",
            "filename": filename,
            "mimetype": mimetype,
            "content": _encode_content(content, where),
        }
    raise SerializationError(
        f"{where} is a {type(attachment).__name__}; only (filename, content, mimetype), "
        "MIMEPart and MIMEBase attachments can be stored"
    )


def _encode_content(content: object, where: str) -> dict[str, str]:
    if isinstance(content, (str, Promise)):
        return {"text": str(content)}
    if isinstance(content, (bytes, bytearray, memoryview)):
        return {"b64": _b64(bytes(content))}
    if isinstance(content, EmailMessage):
        # A message/rfc822 attachment holding a Django message: freeze it as rendered now.
        content = content.message()
    if isinstance(content, Message):
        policy = "default" if isinstance(content.policy, EmailPolicy) else "compat32"
        return {"rfc822": _b64(_mime_bytes(content)), "policy": policy}
    raise SerializationError(
        f"{where} has content of type {type(content).__name__}; "
        "only str, bytes or an email message can be stored"
    )


def _mime_bytes(part: Message) -> bytes:
    # Written so that parsing gives back the header values the outer message will render:
    # modern parts are folded exactly as a 78-column policy renders them (and such lines are then
    # copied verbatim); compat32 parts hold plain strings, written unfolded to come back unchanged.
    if isinstance(part.policy, EmailPolicy):
        policy: Policy[Any] = email.policy.default
    else:
        policy = compat32.clone(max_line_length=0)
    buffer = BytesIO()
    BytesGenerator(buffer, mangle_from_=False, policy=policy).flatten(part)
    return buffer.getvalue()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def from_payload(payload: Mapping[str, Any]) -> EmailMessage:
    """Rebuild the message stored by :func:`to_payload`; raise UndecodableMessage if impossible."""
    if not isinstance(payload, Mapping):
        raise UndecodableMessage(f"the stored message is a {type(payload).__name__}, not an object")
    version = payload.get("v")
    if type(version) is not int or version != PAYLOAD_VERSION:
        raise UndecodableMessage(
            f"the stored message has format version {version!r}; "
            f"this mailroom reads version {PAYLOAD_VERSION}"
        )
    try:
        return _rebuild(payload)
    except (LookupError, TypeError, ValueError, AttributeError) as error:
        # Anything the checks in _rebuild did not foresee is still a bad row, not a crashed worker.
        raise UndecodableMessage(f"the stored message is malformed: {error}") from error


def _rebuild(payload: Mapping[str, Any]) -> EmailMessage:
    class_name = _field(payload, "class", str, "message")
    if class_name not in _CLASSES:
        raise UndecodableMessage(
            f"message class {class_name!r} is not one mailroom rebuilds "
            f"(allowed: {', '.join(_CLASSES)})"
        )
    # Keywords only: Django 6 made everything after ``to`` keyword-only.
    message = _CLASSES[class_name]()(
        subject=_field(payload, "subject", str, "message"),
        body=_field(payload, "body", str, "message"),
        to=_strings(payload, "to"),
        cc=_strings(payload, "cc"),
        bcc=_strings(payload, "bcc"),
        reply_to=_strings(payload, "reply_to"),
        headers=_headers(payload),
    )
    # Assigned, not passed: the constructor would swap an empty value for DEFAULT_FROM_EMAIL.
    message.from_email = cast("str", _optional_str(payload, "from_email", "message"))
    content_subtype = _field(payload, "content_subtype", str, "message")
    if content_subtype != message.content_subtype:
        message.content_subtype = content_subtype
    encoding = _optional_str(payload, "encoding", "message")
    if encoding is not None:
        message.encoding = encoding
    alternatives = _field(payload, "alternatives", list, "message")
    if alternatives:
        if not isinstance(message, EmailMultiAlternatives):
            raise UndecodableMessage(f"a {class_name} cannot carry alternatives")
        message.alternatives = [
            EmailAlternative(
                _decode_content(_item(item, f"alternative {index}"), f"alternative {index}"),
                _field(item, "mimetype", str, f"alternative {index}"),
            )
            for index, item in enumerate(alternatives)
        ]
    # Appended rather than attach()ed: attach() already ran on the original (guessing types and
    # decoding text), and re-running it would warn again about MIMEBase on Django 6.
    message.attachments = [
        _decode_attachment(item, f"attachment {index}")
        for index, item in enumerate(_field(payload, "attachments", list, "message"))
    ]
    for name in _LEGACY_SUBTYPES:
        if name in payload:
            setattr(message, name, _field(payload, name, str, "message"))
    anymail_extras.apply(message, payload.get("anymail", {}))
    return message


def _strings(payload: Mapping[str, Any], key: str) -> list[str]:
    values = _field(payload, key, list, "message")
    if not all(isinstance(value, str) for value in values):
        raise UndecodableMessage(f"message: every entry of {key!r} should be a str")
    return values


def _headers(payload: Mapping[str, Any]) -> dict[str, str]:
    headers = _field(payload, "headers", dict, "message")
    if not all(isinstance(name, str) and isinstance(value, str) for name, value in headers.items()):
        raise UndecodableMessage("message: every header name and value should be a str")
    return headers


def _decode_attachment(item: object, where: str) -> Any:
    entry = _item(item, where)
    kind = _field(entry, "kind", str, where)
    if kind in ("mimepart", "mimebase"):
        return _MIME_PARSERS[kind](_b64decode(_field(entry, "b64", str, where), where))
    if kind == "file":
        return EmailAttachment(
            _optional_str(entry, "filename", where),
            _decode_content(entry, where),
            _field(entry, "mimetype", str, where),
        )
    raise UndecodableMessage(f"{where} has an unknown kind {kind!r}")


def _decode_content(entry: Mapping[str, Any], where: str) -> str | bytes | Message:
    content = _item(entry.get("content"), f"{where} content")
    if "text" in content:
        return _field(content, "text", str, where)
    if "b64" in content:
        return _b64decode(_field(content, "b64", str, where), where)
    if "rfc822" in content:
        policy = _field(content, "policy", str, where)
        if policy not in ("default", "compat32"):
            raise UndecodableMessage(f"{where} has an unknown message policy {policy!r}")
        return _MIME_PARSERS[policy](_b64decode(_field(content, "rfc822", str, where), where))
    raise UndecodableMessage(f"{where}: content has none of 'text', 'b64' or 'rfc822'")


def _b64decode(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as error:  # binascii.Error, or non-ASCII text
        raise UndecodableMessage(f"{where}: invalid base64 ({error})") from error
