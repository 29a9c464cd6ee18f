"""A message's content (its payload and MIME bytes) beside its row.

The content is a row of its own (:class:`~mailroom.models.MessageContent`, see there why), which
travels with its message as Django's cache of the reverse one-to-one relation, ``row.content``:
attached to a new row before the insert writes both, and attached to a claimed row by the claim
(its MIME bytes only; :mod:`mailroom.loading` reads the rest where needed).
"""

from __future__ import annotations

from typing import Any

from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init

from .exceptions import UndecodableMessage
from .models import Message, MessageContent

#: The name Django caches ``row.content`` under (the reverse accessor's name).
_CACHE = "content"


def attach(row: Message, payload: Any, mime: bytes | None) -> MessageContent:
    """Give the new ``row`` its content, to be written with it."""
    if pre_init.has_listeners(MessageContent) or post_init.has_listeners(MessageContent):
        content = MessageContent(payload=payload, mime=mime)
    else:
        # What MessageContent(...) makes, without Model.__init__'s walk over the fields: a bulk
        # enqueue makes one per message.
        content = MessageContent.__new__(MessageContent)
        content.__dict__.update(_state=ModelState(), message_id=None, payload=payload, mime=mime)
    _link(row, content)
    return content


def _link(row: Message, content: MessageContent) -> None:
    """Cache each on the other, as Django's descriptors and select_related do."""
    row._state.fields_cache[_CACHE] = content
    content._state.fields_cache["message"] = row


def attach_stored(row: Message, values: dict[str, Any]) -> MessageContent:
    """Give the claimed ``row`` its stored content, from ``values`` (``mime``, and ``payload``
    if it was read: a field missing from them is deferred, read when first used)."""
    content = MessageContent.__new__(MessageContent)
    state = ModelState()
    state.adding = False
    state.db = row._state.db
    content.__dict__.update(values, _state=state, message_id=row.pk)
    _link(row, content)
    return content


def attached(row: Message) -> MessageContent | None:
    """The content attached to ``row`` (a new row's, or what a claim brought), if any: never
    a query, where ``row.content`` would read a missing one."""
    content = row._state.fields_cache.get(_CACHE)
    assert content is None or isinstance(content, MessageContent)
    return content


def of(row: Message) -> MessageContent:
    """``row``'s content (read now if the row came without it); UndecodableMessage if there is
    none, which mailroom never leaves, but a row inserted by hand can."""
    try:
        return row.content
    except MessageContent.DoesNotExist:
        raise UndecodableMessage(
            f"message #{row.pk} has no stored content (no row in "
            f"{MessageContent._meta.db_table}): there is nothing to send"
        ) from None
