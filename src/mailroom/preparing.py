"""Values prepared for the hand-written statements, as Django's fields would prepare them.

The inserts of enqueue (``inserting``) and of the send path's attempts (``recording_plain``,
``recording_sqlite``) are written by hand, once; their values still go through the fields, so
that they are stored exactly as the ORM would store them. ``field.get_db_prep_save(value,
connection)`` is a chain of four or five calls for every value; for Django's own field types
and the plain values mailroom itself puts in them, the one step of that chain that changes
anything is taken directly here. Any other value goes the whole way, and so does every value
of a field whose class prepares values its own way (a subclass that changes something else,
as mailroom's ``ContentKey`` changes the column's type, takes its base's shortcut). Each
shortcut is checked against the field's own preparation, value by value, on every database
(tests/integration/test_enqueue.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeGuard, TypeVar

from django.db import connection, models

F = TypeVar("F", bound=models.Field)  # type: ignore[type-arg]

#: Primary keys a foreign key points at: int() and the backend's validate_autopk_value, which
#: refuses 0 on MySQL (so only a positive int takes the shortcut).
_AUTO_KEYS = frozenset({models.AutoField, models.BigAutoField, models.SmallAutoField})


#: The methods a field prepares a value with: a subclass that overrides none of them prepares
#: as its base does.
_PREPARATION = ("get_db_prep_save", "get_db_prep_value", "get_prep_value", "to_python")


def _prepares_as(field: models.Field[Any, Any], base: type[F]) -> TypeGuard[F]:
    kind = type(field)
    if kind is base:
        return True
    return isinstance(field, base) and all(
        getattr(kind, name) is getattr(base, name) for name in _PREPARATION
    )


@functools.cache
def preparer(field: models.Field[Any, Any]) -> Callable[[Any], Any]:
    """``field.get_db_prep_save(value, connection)`` as a function of the value (the default
    database's: the only one mailroom writes its rows to)."""

    def whole(value: Any) -> Any:
        return field.get_db_prep_save(value, connection)

    if _prepares_as(field, models.JSONField):
        adapt_json, encoder = connection.ops.adapt_json_value, field.encoder

        def json_value(value: Any) -> Any:
            if type(value) is dict or type(value) is list:
                return adapt_json(value, encoder)
            return whole(value)

        return json_value
    if _prepares_as(field, models.BinaryField):
        binary = connection.Database.Binary  # type: ignore[attr-defined]

        def bytes_value(value: Any) -> Any:
            return binary(value) if type(value) is bytes else whole(value)

        return bytes_value
    if _prepares_as(field, models.DateTimeField):
        # An aware datetime passes get_prep_value unchanged (only a naive one is warned about
        # and made aware); adapt_datetimefield_value is what remains (SQLite and MySQL store
        # it naive in the connection's zone, as text; PostgreSQL takes it as it is). Looked
        # up on this thread's connection each time: the zone is that connection's.

        def datetime_value(value: Any) -> Any:
            # A message's unset dates (sent_at, claimed_until...) are most of its dates.
            if value is None:
                return None
            if type(value) is datetime and value.utcoffset() is not None:
                return connection.ops.adapt_datetimefield_value(value)
            return whole(value)

        return datetime_value
    if _prepares_as(field, models.IntegerField):
        # Small, big and positive integers alike (an auto key prepares its own way); the
        # int() of get_prep_value gives an int back as it is, and the database's
        # adapt_integerfield_value is what remains.
        adapt_integer, internal = connection.ops.adapt_integerfield_value, field.get_internal_type()

        def integer_value(value: Any) -> Any:
            if value is None:
                return None
            if type(value) is int:
                return adapt_integer(value, internal)
            if isinstance(value, int):  # an IntegerChoices member (a priority), a bool
                return adapt_integer(int(value), internal)
            return whole(value)

        return integer_value
    if _prepares_as(field, models.ForeignKey):
        target = field.target_field
        if type(target) in _AUTO_KEYS:

            def key_value(value: Any) -> Any:
                return value if type(value) is int and value > 0 else whole(value)

            return key_value
        return whole
    if _prepares_as(field, models.FloatField):

        def float_value(value: Any) -> Any:
            return value if type(value) is float else whole(value)

        return float_value
    if _prepares_as(field, models.BooleanField):

        def bool_value(value: Any) -> Any:
            return value if type(value) is bool else whole(value)

        return bool_value
    if _prepares_as(field, models.CharField) or _prepares_as(field, models.TextField):
        # get_prep_value's to_python gives any str back as it is (a TextChoices member, a
        # status, included).

        def text_value(value: Any) -> Any:
            return value if isinstance(value, str) else whole(value)

        return text_value
    return whole
