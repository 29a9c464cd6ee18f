"""The Django email backend that queues instead of sending.

Use it wherever a backend goes: ``EMAIL_BACKEND = "mailroom.backend.EmailBackend"`` on
Django 5.2, or a ``MAILERS`` entry on Django 6.1 (``OPTIONS={"using": "<delivery alias>"}``).
``send_messages`` returns the number of messages queued, as Django's contract asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from .enqueueing import enqueue_many
from .models import Priority


class EmailBackend(BaseEmailBackend):
    """Queues every message in the application's database, in the caller's transaction.

    Options (keyword arguments, or ``OPTIONS`` under ``MAILERS``):

    - ``using``: the delivery backend alias to queue for (default: ``MAILROOM["DEFAULT_BACKEND"]``);
    - ``priority``: ``"high"``, ``"normal"`` (default) or ``"low"``.
    """

    def __init__(
        self,
        fail_silently: bool = False,
        *,
        using: str | None = None,
        priority: Priority | str | int = Priority.NORMAL,
        **kwargs: Any,
    ) -> None:
        # Our own options are taken before BaseEmailBackend sees them: on Django 6.1 it
        # refuses options it does not know, and wants a subclass that supports fail_silently
        # to keep it itself.
        super().__init__(**kwargs)
        self.silent = bool(fail_silently)
        self.using = using
        self.priority = Priority.coerce(priority)

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        if not email_messages:
            return 0
        rows = enqueue_many(
            email_messages,
            priority=self.priority,
            backend=self.using,
            skip_invalid=self.silent,
        )
        return len(rows)
