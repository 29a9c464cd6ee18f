"""Per-recipient outcomes: who was accepted, deferred or refused, and what that makes the message.

A call that returned (did not raise) may still have refused some recipients (smtplib's
``sendmail()`` return value, anymail's per-recipient status); an ``SMTPRecipientsRefused`` or an
``AnymailRecipientsRefused`` names the refused ones. Each case becomes one
:class:`~mailroom.outcomes.RecipientResult` per envelope recipient, and :func:`_combine` turns
their states into the message's :class:`~mailroom.outcomes.Classification`: retry only the
deferred ones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from mailroom.matching import Facts, decode_reply, enhanced_matches, parse_enhanced, unexpected
from mailroom.outcomes import (
    Classification,
    DeliveryResult,
    RecipientResult,
    RecipientState,
    Verdict,
)
from mailroom.rules_esp import anymail_recipient_statuses

NOTHING_SENT = "nothing was sent: the backend reported 0 messages sent"

# --- What a call that returned (did not raise) means ---------------------------------------

_ESP_STATES = {
    "sent": RecipientState.SENT,
    "queued": RecipientState.SENT,
    "invalid": RecipientState.FAILED,
    "rejected": RecipientState.FAILED,  # on the ESP's suppression list
    "failed": RecipientState.RETRY,  # "failed for some other reason", e.g. SES TRANSIENT_FAILURE
    "unknown": RecipientState.RETRY,
}


def classify_returned(result: DeliveryResult) -> Classification:
    if result.sent_count == 0:
        # No recipients, an anymail pre_send cancel, or fail_silently: retrying would loop forever.
        # Checked first: an anymail_status left from such a call says nothing about this one.
        failed = RecipientResult(address="", state=RecipientState.FAILED, detail=NOTHING_SENT)
        results = _per_recipient(result.recipients, {}, failed)
        return _combine(results, verdict=Verdict.FAILED, reason=NOTHING_SENT)
    if result.refused:
        # smtplib's sendmail() accepted the message for some recipients and returned the rest;
        # Django's own backend drops this dict (taxonomy section 2.2), our delivery keeps it.
        refused = {addr: _smtp_refusal(addr, *reply) for addr, reply in result.refused.items()}
        sent = RecipientResult(address="", state=RecipientState.SENT)
        results = _per_recipient(result.recipients, refused, sent)
        if any(r.code == 421 for r in refused.values()):
            return _combine(results, verdict=Verdict.BACKEND_DOWN)
        return _combine(results)
    if result.esp_status:
        esp = {
            addr: RecipientResult(
                address=addr,
                state=_ESP_STATES.get(status, RecipientState.RETRY),
                detail=f"ESP status: {status}",
            )
            for addr, status in result.esp_status.items()
        }
        # The call succeeded; a recipient the ESP did not mention was not refused either.
        sent = RecipientResult(address="", state=RecipientState.SENT, detail="no ESP status")
        return _combine(_per_recipient(result.recipients, esp, sent))
    sent = RecipientResult(address="", state=RecipientState.SENT)
    return _combine(_per_recipient(result.recipients, {}, sent), reason="accepted for delivery")


# --- Per-recipient errors ------------------------------------------------------------------

_TOO_MANY_RECIPIENTS = re.compile(r"too many recipients", re.IGNORECASE)


def smtp_recipients_refused(
    error: BaseException, facts: Facts, result: DeliveryResult
) -> Classification:
    replies = getattr(error, "recipients", None)
    if not isinstance(replies, Mapping) or not replies:
        return unexpected(error, facts)
    refused = {addr: _smtp_refusal(addr, *reply) for addr, reply in replies.items()}
    down = next((r for r in refused.values() if r.code == 421), None)
    if down is not None:
        # smtplib closes the connection and raises at once on a RCPT 421 (taxonomy 1.2): the
        # server is going away, nothing about these recipients is known.
        return Classification(
            verdict=Verdict.BACKEND_DOWN,
            reason=f"server closing the connection: {down.detail}",
            code=421,
            enhanced_code=parse_enhanced(down.detail.partition(" ")[2]),
        )
    # The transaction was reset, so a recipient missing from the dict was not accepted either.
    untried = RecipientResult(address="", state=RecipientState.RETRY, detail="transaction reset")
    return _combine(_per_recipient(result.recipients, refused, untried))


def anymail_recipients_refused(
    error: BaseException, facts: Facts, result: DeliveryResult
) -> Classification:
    # Raised only when every recipient is invalid or rejected (anymail raise_for_recipient_status).
    statuses = anymail_recipient_statuses(error) or {}
    refused = {
        addr: RecipientResult(address=addr, state=RecipientState.FAILED, detail=f"ESP status: {s}")
        for addr, s in statuses.items()
    }
    default = RecipientResult(address="", state=RecipientState.FAILED, detail="refused by the ESP")
    results = _per_recipient(result.recipients, refused, default)
    return Classification(
        verdict=Verdict.FAILED,
        reason=f"ESP refused every recipient: {facts.summary}",
        code=facts.code,
        recipients=tuple(results),
    )


def _smtp_refusal(address: str, code: int, message: bytes | str) -> RecipientResult:
    text = decode_reply(message)
    enhanced = parse_enhanced(text)
    if 400 <= code < 500:
        state = RecipientState.RETRY
    elif enhanced_matches(enhanced, ("X.5.3", "X.2.2")) or (
        code == 552 and _TOO_MANY_RECIPIENTS.search(text)
    ):
        # RFC 5321 4.5.3.1.10: treat 552 "too many recipients" as the 452 it should have been;
        # RFC 3463: X.5.3 asks to split the batch, X.2.2 (mailbox full) is persistent-transient.
        state = RecipientState.RETRY
    elif 500 <= code < 600:
        state = RecipientState.FAILED
    else:  # a code RFC 5321 does not define for RCPT: do not give up on the recipient
        state = RecipientState.RETRY
    return RecipientResult(address=address, state=state, code=code, detail=f"{code} {text}".strip())


def _per_recipient(
    recipients: Sequence[str], known: Mapping[str, RecipientResult], default: RecipientResult
) -> list[RecipientResult]:
    """One result per envelope recipient, in order; addresses compare case-insensitively."""
    by_lower = {addr.lower(): addr for addr in known}
    results, used = [], set()
    for address in recipients:
        key = address if address in known else by_lower.get(address.lower())
        found = known[key] if key is not None else default
        used.add(key)
        results.append(
            RecipientResult(
                address=address, state=found.state, code=found.code, detail=found.detail
            )
        )
    results.extend(r for addr, r in known.items() if addr not in used)
    return results


def _combine(
    results: list[RecipientResult], *, verdict: Verdict | None = None, reason: str = ""
) -> Classification:
    """The message's verdict from its recipients' states: retry only the deferred ones."""
    states = {r.state for r in results}
    if verdict is None:
        if states == {RecipientState.FAILED}:
            verdict = Verdict.FAILED
        elif states == {RecipientState.RETRY}:
            verdict = Verdict.RETRY
        elif RecipientState.RETRY in states:
            verdict = Verdict.RETRY_RECIPIENTS
        else:
            verdict = Verdict.SENT  # an empty list too: nothing left to deliver
    refusals = [r for r in results if r.state is not RecipientState.SENT]
    first = next((r for r in refusals if r.code is not None), None)
    return Classification(
        verdict=verdict,
        reason=reason or _recipients_reason(results, refusals),
        code=first.code if first else None,
        enhanced_code=parse_enhanced(first.detail.partition(" ")[2]) if first else None,
        recipients=tuple(results),
    )


def _recipients_reason(results: list[RecipientResult], refusals: list[RecipientResult]) -> str:
    if not refusals:
        return "accepted for every recipient"
    phrase = {RecipientState.FAILED: "refused permanently", RecipientState.RETRY: "deferred"}
    if len(results) == 1:
        return f"recipient {phrase[refusals[0].state]}: {refusals[0].detail}"
    counts = [
        f"{sum(r.state is state for r in results)} {word}"
        for state, word in ((RecipientState.SENT, "accepted"), *phrase.items())
        if any(r.state is state for r in results)
    ]
    return f"recipients {', '.join(counts)}; first: {refusals[0].address} {refusals[0].detail}"
