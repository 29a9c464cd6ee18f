"""A third-party email backend of the kind the seed report describes.

It is not smtplib-based and raises its own exception type, which no built-in rule knows:
exactly what stalled django-mailer's queue. It delivers into ``outbox`` like locmem.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

outbox: list[EmailMessage] = []


class VendorAPIException(Exception):
    """The vendor's own error, e.g. 'Message generation rejected Code: 1902'."""


class EmailBackend(BaseEmailBackend):
    def __init__(self, *args: Any, poison_subject: str = "boom", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.poison_subject = poison_subject

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        sent = 0
        for message in email_messages:
            if self.poison_subject in message.subject:
                raise VendorAPIException(
                    "Call to https://api.vendor.invalid/transmissions returned 400, "
                    "errors: Message generation rejected Code: 1902"
                )
            outbox.append(message)
            sent += 1
        return sent
