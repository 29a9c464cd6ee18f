"""Argument types the subcommands share: a value out of range is a usage error that says so,
before anything runs (``--poll-interval -1`` was a worker polling the database in a busy loop,
``--batch-size -5`` a traceback, ``status --max-oldest-due nan`` a check that never fired)."""

from __future__ import annotations

import math
from argparse import ArgumentTypeError


def at_least_one(text: str) -> int:
    """A whole number of 1 or more."""
    return _whole(text, least=1)


def at_least_zero(text: str) -> int:
    """A whole number of 0 or more."""
    return _whole(text, least=0)


def seconds(text: str) -> float:
    """A finite number of seconds, 0 or more."""
    value = _finite(text)
    if value < 0:
        raise ArgumentTypeError(f"must be 0 seconds or more, not {text}")
    return value


def positive_seconds(text: str) -> float:
    """A finite number of seconds, more than 0."""
    value = _finite(text)
    if value <= 0:
        raise ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value):
        raise ArgumentTypeError(f"not a number of seconds: {text!r}")
    return value


def _whole(text: str, *, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < least:
        raise ArgumentTypeError(f"must be at least {least}, not {value}")
    return value
