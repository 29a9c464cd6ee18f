"""Queued messages and attempts as the admin tests need them, made through the real enqueue path."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from django.core.mail import EmailMultiAlternatives
from django.utils import timezone

import mailroom
from mailroom.models import Attempt, Message, Status


def queue_message(
    *,
    subject: str = "Your order has shipped",
    to: Iterable[str] = ("ada@example.com",),
    text: str = "Hello Ada,\nyour order is on its way.",
    html: str | None = None,
    attachments: Iterable[tuple[str | None, str | bytes, str]] = (),
    status: str = Status.QUEUED,
    **fields: Any,
) -> Message:
    """Enqueue a message, then give its row ``status`` and any other ``fields``."""
    message = EmailMultiAlternatives(subject, text, "shop@example.com", list(to))
    if html is not None:
        message.attach_alternative(html, "text/html")
    for filename, content, mimetype in attachments:
        message.attach(filename, content, mimetype)
    row = mailroom.enqueue(message)
    if status != Status.QUEUED or fields:
        Message.objects.filter(pk=row.pk).update(status=status, **fields)
        row.refresh_from_db()
    return row


def record_attempt(
    message: Message,
    *,
    verdict: str = "retry",
    minutes_ago: float = 0,
    recipients: Mapping[str, Mapping[str, Any]] | None = None,
    **fields: Any,
) -> Attempt:
    return Attempt.objects.create(
        message=message,
        started_at=timezone.now() - timedelta(minutes=minutes_ago),
        duration=0.25,
        backend=message.backend,
        worker="worker-1",
        verdict=verdict,
        recipients=dict(recipients or {}),
        **fields,
    )
