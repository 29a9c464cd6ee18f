"""The messages measured, by shape. The same shape is built the same way for every app.

- ``plain``: plain text, one recipient, a 1 KiB body (performance.md's method).
- ``attachment``: the same with a 1 MiB binary attachment.
- ``recipients50``: the same addressed to 50 recipients.
- ``small``: a 100-byte body, for filling a queue a million deep.
"""

from __future__ import annotations

import random
from functools import cache

from django.core.mail import EmailMessage

SENDER = "bench@example.com"
BODY = ("x" * 63 + "\n") * 16  # 1 KiB
SMALL_BODY = "x" * 99 + "\n"
SHAPES = ("plain", "attachment", "recipients50", "small")


@cache
def attachment_bytes() -> bytes:
    return random.Random(4).randbytes(1024 * 1024)


def recipients(i: int, shape: str) -> list[str]:
    if shape == "recipients50":
        return [f"r{i}-{k}@example.com" for k in range(50)]
    return [f"r{i}@example.com"]


def subject(i: int) -> str:
    return f"Benchmark message {i}"


def body(shape: str) -> str:
    return SMALL_BODY if shape == "small" else BODY


def build(i: int, shape: str = "plain") -> EmailMessage:
    """Message number ``i`` of ``shape``, as an application would build it."""
    if shape not in SHAPES:
        raise ValueError(f"unknown message shape {shape!r}")
    message = EmailMessage(subject(i), body(shape), SENDER, recipients(i, shape))
    if shape == "attachment":
        message.attach("data.bin", attachment_bytes(), "application/octet-stream")
    return message


def build_many(n: int, shape: str = "plain") -> list[EmailMessage]:
    return [build(i, shape) for i in range(n)]
