"""A message's attempt history and where each of its recipients stands, for the message page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailroom.models import Attempt, Message

#: The message page shows at most this many attempts (the latest). A backend that stays down
#: for days adds an uncharged attempt at every probe, so the history has no natural bound.
ATTEMPTS_SHOWN = 500


@dataclass(frozen=True, kw_only=True)
class RecipientLine:
    address: str
    state: str
    code: int | None = None
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class AttemptLine:
    attempt: Attempt
    recipients: tuple[RecipientLine, ...]


@dataclass(frozen=True, kw_only=True)
class History:
    attempts: tuple[AttemptLine, ...]
    #: True when older attempts were left out (see ATTEMPTS_SHOWN).
    truncated: bool
    recipients: tuple[RecipientLine, ...]


def history(message: Message) -> History:
    """The latest attempts, oldest first, and each envelope recipient's state. One query."""
    latest = list(message.attempts_log.order_by("-started_at", "-id")[: ATTEMPTS_SHOWN + 1])
    truncated = len(latest) > ATTEMPTS_SHOWN
    attempts = latest[:ATTEMPTS_SHOWN][::-1]
    return History(
        attempts=tuple(
            AttemptLine(attempt=a, recipients=_attempt_recipients(a.recipients)) for a in attempts
        ),
        truncated=truncated,
        recipients=_recipient_states(message, attempts),
    )


def _attempt_recipients(results: Any) -> tuple[RecipientLine, ...]:
    if not isinstance(results, dict):
        return ()
    return tuple(_line(str(address), result) for address, result in results.items())


def _line(address: str, result: Any) -> RecipientLine:
    result = result if isinstance(result, dict) else {"state": str(result)}
    code = result.get("code")
    return RecipientLine(
        address=address,
        state=str(result.get("state", "")),
        code=code if isinstance(code, int) else None,
        detail=str(result.get("detail", "")),
    )


def _recipient_states(message: Message, attempts: list[Attempt]) -> tuple[RecipientLine, ...]:
    # The message row says where each recipient stands; the latest attempt that named an
    # address says what its server last answered.
    last_reply: dict[str, RecipientLine] = {}
    for attempt in attempts:
        for line in _attempt_recipients(attempt.recipients):
            last_reply[line.address] = line
    refused = message.refused_recipients if isinstance(message.refused_recipients, dict) else {}
    pending = set(message.pending)
    lines = []
    for address in message.recipients:
        reply = last_reply.get(address)
        if address in refused:
            state, detail = "refused", str(refused[address])
        elif address not in pending:
            state, detail = "accepted", reply.detail if reply else ""
        else:
            state, detail = _pending_state(message.status), reply.detail if reply else ""
        lines.append(
            RecipientLine(
                address=address, state=state, code=reply.code if reply else None, detail=detail
            )
        )
    return tuple(lines)


def _pending_state(status: str) -> str:
    # A recipient still pending on a finished message was never reached.
    return "not delivered" if status in ("failed", "cancelled") else "pending"
