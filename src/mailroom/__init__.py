"""django-mailroom: a reliable outgoing-email queue for Django.

Queue with ``EMAIL_BACKEND = "mailroom.backend.EmailBackend"`` (or a ``MAILERS`` entry on
Django 6.1), or call :func:`enqueue` for the options a backend cannot take. Deliver with
``python manage.py mailroom send``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "CANCELLED",
    "FAILED",
    "QUEUED",
    "SENDING",
    "SENT",
    "enqueue",
    "enqueue_many",
]

QUEUED = "queued"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
CANCELLED = "cancelled"

if TYPE_CHECKING:
    from .enqueueing import enqueue, enqueue_many


def __getattr__(name: str) -> Any:
    # Imported lazily: importing mailroom (from settings, say) must not load models before
    # Django's app registry is ready.
    if name in {"enqueue", "enqueue_many"}:
        from . import enqueueing as module

        value = getattr(module, name)
        # Kept as a module attribute, so that this hook runs once: ``mailroom.enqueue`` in a
        # request (or ``from mailroom import enqueue`` in a function) is then a plain lookup.
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mailroom' has no attribute {name!r}")
