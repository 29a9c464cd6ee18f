"""Reading a stored payload's fields with a reason a person can read when one is wrong.

Every check raises :class:`~mailroom.exceptions.UndecodableMessage` naming where in the payload
the fault is, so that a damaged or hand-edited row fails alone and says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from mailroom.exceptions import UndecodableMessage

_T = TypeVar("_T")


def field(source: Mapping[str, Any], key: str, kind: type[_T], where: str) -> _T:
    """``source[key]``, which must be there and be a ``kind``."""
    if key not in source:
        raise UndecodableMessage(f"{where}: the field {key!r} is missing")
    value = source[key]
    if not isinstance(value, kind):
        raise UndecodableMessage(
            f"{where}: the field {key!r} should be a {kind.__name__}, not {type(value).__name__}"
        )
    return value


def optional_str(source: Mapping[str, Any], key: str, where: str) -> str | None:
    """``source[key]``: a str, or None (stored as null or left out)."""
    return None if source.get(key, "") is None else field(source, key, str, where)


def item(value: object, where: str) -> Mapping[str, Any]:
    """``value``, which must be a JSON object."""
    if not isinstance(value, Mapping):
        raise UndecodableMessage(f"{where} is a {type(value).__name__}, not an object")
    return value
