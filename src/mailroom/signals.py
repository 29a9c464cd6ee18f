"""Signals sent as messages move through the queue.

Every signal is sent with ``send_robust``, after the state change is committed: a receiver
that raises is logged and never stops delivery. Senders check ``has_listeners`` first, so an
unused signal costs nothing on the send path.

- ``message_queued(sender=Message, messages=[Message, ...])``
- ``message_sent(sender=Message, message=Message, attempt=Attempt)``
- ``retry_scheduled(sender=Message, message=Message, attempt=Attempt, due_at=datetime)``
- ``message_failed(sender=Message, message=Message, attempt=Attempt | None, reason=str)``
- ``backend_paused(sender=BackendState, alias=str, until=datetime, verdict=str, reason=str)``
- ``backend_resumed(sender=BackendState, alias=str)``
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.dispatch import Signal

if TYPE_CHECKING:
    from .models import Message

logger = logging.getLogger(__name__)

message_queued = Signal()
message_sent = Signal()
retry_scheduled = Signal()
message_failed = Signal()
backend_paused = Signal()
backend_resumed = Signal()


def send(signal: Signal, sender: Any, **kwargs: Any) -> None:
    if not signal.has_listeners(sender):
        return
    for receiver, result in signal.send_robust(sender=sender, **kwargs):
        if isinstance(result, Exception):
            logger.error(
                "mailroom: signal receiver %r raised %s: %s",
                receiver,
                type(result).__name__,
                result,
            )


def send_queued(messages: Sequence[Message]) -> None:
    from .models import Message

    send(message_queued, Message, messages=messages)
