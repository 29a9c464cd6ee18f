"""django-anymail's attributes of a message (tags, metadata, merge data, ``send_at``...).

anymail reads them from any ``EmailMessage`` it sends, not only from an ``AnymailMessage``, so
they are stored with every payload that has them (under ``"anymail"``) and set again when the
message is rebuilt. Only the names anymail documents are read back: a row cannot set any other
attribute of a message (``send``, say). Values must be JSON; ``send_at`` keeps whether it was a
date or a datetime. Pure, like :mod:`mailroom.serialization`, and anymail is not needed to load
this module.
"""

from __future__ import annotations

import datetime
import functools
import math
from collections.abc import Mapping
from typing import Any

from django.core.mail import EmailMessage
from django.utils.functional import Promise

from mailroom.compat import DJANGO_MESSAGE_CLASSES
from mailroom.exceptions import SerializationError, UndecodableMessage
from mailroom.payload_checks import field, item

# The attributes django-anymail reads from any EmailMessage (anymail/message.py).
ANYMAIL_ATTRIBUTES = (
    "tags",
    "metadata",
    "merge_data",
    "merge_global_data",
    "merge_metadata",
    "merge_headers",
    "template_id",
    "esp_extra",
    "track_clicks",
    "track_opens",
    "envelope_sender",
    "send_at",
)


_NAMES = frozenset(ANYMAIL_ATTRIBUTES)

_ABSENT = object()


@functools.cache
def _anymail_unset() -> object:
    """django-anymail's default for every AnymailMessage attribute, or a stand-in without it.

    Looked up once: a failed import is not cached by Python, and this is asked a dozen
    times for every message enqueued.
    """
    try:
        from anymail.utils import UNSET
    except ImportError:
        return _ABSENT
    return UNSET


def _is_unset(value: object) -> bool:
    return value is _ABSENT or value is _anymail_unset()


def encode(message: EmailMessage) -> dict[str, Any]:
    """The anymail attributes set on ``message``, as JSON (SerializationError if one cannot
    be stored: JSON is all a row holds)."""
    extras: dict[str, Any] = {}
    if type(message) in DJANGO_MESSAGE_CLASSES and _NAMES.isdisjoint(vars(message)):
        # Django's classes define none of these names: unset on the instance, none is set
        # (a dozen failed attribute lookups saved on every message enqueued).
        return extras
    for name in ANYMAIL_ATTRIBUTES:
        value = getattr(message, name, _ABSENT)
        if _is_unset(value):
            continue
        where = f"anymail attribute {name!r}"
        if name == "send_at":
            extras[name] = _encode_send_at(value, where)
        else:
            extras[name] = _require_json(value, where)
    return extras


def _encode_send_at(value: object, where: str) -> dict[str, Any]:
    # Tagged so that a date comes back a date and a datetime a datetime (checked first: a
    # datetime is also a date); anymail also accepts a timestamp, stored as-is.
    if isinstance(value, datetime.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, datetime.date):
        return {"date": value.isoformat()}
    return {"json": _require_json(value, where)}


def _require_json(value: object, where: str) -> Any:
    if isinstance(value, Promise):
        return str(value)
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, (list, tuple)):
        return [_require_json(entry, where) for entry in value]
    # Keys must already be strings: json.dumps would silently turn 1 into "1".
    if isinstance(value, Mapping) and all(isinstance(key, str) for key in value):
        return {key: _require_json(entry, where) for key, entry in value.items()}
    raise SerializationError(
        f"{where} holds a {type(value).__name__}, which cannot be stored as JSON"
    )


def apply(message: EmailMessage, stored: object) -> None:
    """Set the attributes ``stored`` (a payload's ``"anymail"``) on the rebuilt ``message``."""
    for name, value in item(stored, "anymail attributes").items():
        # Only known names: a row must not be able to overwrite, say, message.send.
        if name not in ANYMAIL_ATTRIBUTES:
            raise UndecodableMessage(f"unknown anymail attribute {name!r}")
        setattr(message, name, _decode_send_at(value) if name == "send_at" else value)


def _decode_send_at(value: object) -> object:
    encoded = item(value, "anymail attribute 'send_at'")
    if "datetime" in encoded:
        return datetime.datetime.fromisoformat(field(encoded, "datetime", str, "send_at"))
    if "date" in encoded:
        return datetime.date.fromisoformat(field(encoded, "date", str, "send_at"))
    if "json" in encoded:
        return encoded["json"]
    raise UndecodableMessage("anymail attribute 'send_at' has none of 'datetime', 'date', 'json'")
