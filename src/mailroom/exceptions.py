"""Every exception mailroom raises.

Each class's docstring is the sentence a person reads when it is raised without a message.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


class MailroomError(Exception):
    """Something went wrong in mailroom."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class InvalidMessage(MailroomError, ValueError):
    """The message cannot be queued as it is; nothing was stored."""

    def __init__(self, message: str | None = None, *, index: int | None = None) -> None:
        # ``index`` says which message of a bulk call was refused, so a caller that
        # enqueued a thousand at once can find the bad one.
        self.index = index
        super().__init__(message)


class SerializationError(MailroomError):
    """A message could not be turned into (or rebuilt from) its stored JSON form."""


class UndecodableMessage(SerializationError):
    """The stored row cannot be rebuilt into an email message."""


class BackendNotConfigured(MailroomError, ImproperlyConfigured):
    """A delivery backend alias is unknown or its settings are wrong."""

    # An ImproperlyConfigured, so the classifier pauses the backend rather than charging
    # messages for a settings mistake.


class BackendRecursion(BackendNotConfigured):
    """A delivery backend points back at mailroom's own queueing backend."""
