"""New :class:`~mailroom.models.Message` rows for one enqueue call, made cheaply.

``Model.__init__`` walks every field of the model for every instance: kwargs looked up,
defaults called, descriptors set. For a bulk enqueue that is a sizeable part of the time
spent per message, and most of it is the same for every row of the call (status, priority,
backend, dates, counters). :class:`RowMaker` makes one row the ordinary way and then each
row as a copy of its field values with the row's own values on top: the same instance
``Message(**values)`` would give, as ``tests/unit/test_new_rows.py`` checks field by field.

If anything listens to the model's ``pre_init`` or ``post_init`` signal, every row is made
with ``Message(**values)`` so that the listener sees each one.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init

from .models import Message


class RowMaker:
    """``make(**values)``: ``Message(**shared, **values)``, with ``shared`` worked out once."""

    def __init__(self, **shared: Any) -> None:
        self.shared = shared
        self.plain = not (pre_init.has_listeners(Message) or post_init.has_listeners(Message))
        self.base = _base(shared) if self.plain else {}
        # A default list or dict (refused_recipients...) must not be one object shared by
        # every row of the call.
        self.mutable = [k for k, v in self.base.items() if isinstance(v, list | dict | set)]

    def make(self, **values: Any) -> Message:
        if not self.plain:
            return Message(**self.shared, **values)
        row = Message.__new__(Message)
        fields = row.__dict__
        fields.update(self.base)
        for name in self.mutable:
            fields[name] = copy.copy(fields[name])
        fields.update(values)
        fields["_state"] = ModelState()
        return row


@functools.cache
def _defaults() -> tuple[dict[str, Any], tuple[tuple[str, Any], ...]]:
    """``Message()``'s field values, made once per process, and the fields whose default is
    a callable, as (attname, field): those are worked out again for each call.

    A one-message enqueue makes one RowMaker; building a whole ``Message()`` for it each time
    was a twentieth of the call.
    """
    made = Message()
    values = {k: v for k, v in made.__dict__.items() if k != "_state"}
    called = tuple(
        (f.attname, f)
        for f in Message._meta.concrete_fields
        if f.has_default() and callable(f.default)
    )
    return values, called


def _base(shared: dict[str, Any]) -> dict[str, Any]:
    """The field values ``Message(**shared)`` would have."""
    constant, called = _defaults()
    base = dict(constant)
    for attname, field in called:
        if attname not in shared:
            base[attname] = field.get_default()
    for name, value in shared.items():
        # Model.__init__ sets a keyword by its field's attname; every shared value names a
        # plain column (no relation), so name and attname are one.
        if name not in base:
            raise TypeError(f"Message() got an unexpected keyword argument {name!r}")
        base[name] = value
    return base
