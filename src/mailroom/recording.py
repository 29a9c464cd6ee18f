"""Writing down what a batch did: attempts appended, messages moved, backends paused.

Writes are grouped so that the happy path costs a constant number of queries per batch (one
bulk insert of attempts, one UPDATE of every message sent), whatever the batch size. Every
message update is fenced on the claim token: a worker that lost its lease changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import F

from . import recording_sqlite, signals, suppression
from .classification import describe
from .models import Attempt, BackendState, Message, Status
from .outcomes import Classification, DeliveryResult, RecipientState, Verdict
from .recording_pg import record_sent
from .recording_plain import mark_sent, record_sent_plain
from .retry import Action, Decision, RetryPolicy, backend_pause
from .suppression import Drop

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """Everything known about one attempt, waiting to be written."""

    message: Message
    result: DeliveryResult
    classification: Classification
    decision: Decision
    started_at: datetime
    duration: float


def record(
    outcomes: Sequence[Outcome], *, token: str, worker: str, now: datetime, text_limit: int
) -> list[Attempt]:
    """Write a batch's outcomes. Returns the attempts, in the order given."""
    if not outcomes:
        return []
    plain_sent = {o.message.pk for o in outcomes if is_plain_sent(o)}
    if len(plain_sent) == len(outcomes) and connection.vendor == "sqlite":
        # The write takes the values as they are: no Attempt is made unless a receiver
        # of message_sent is to get one.
        values = [attempt_values(o, worker=worker, text_limit=text_limit) for o in outcomes]
        moved = recording_sqlite.record_sent(values, list(plain_sent), token=token, now=now)
        made = signal_attempts(outcomes, worker=worker, text_limit=text_limit)
        finish(outcomes, made, moved, now=now)
        return made or []
    attempts = prepare(outcomes, worker=worker, text_limit=text_limit)
    if len(plain_sent) == len(outcomes) and connection.vendor == "postgresql":
        moved = record_sent(attempts, list(plain_sent), token=token, now=now)
    elif len(plain_sent) == len(outcomes):
        moved = record_sent_plain(attempts, list(plain_sent), token=token, now=now)
    else:
        moved = _record_in_a_transaction(outcomes, attempts, plain_sent, token=token, now=now)
    finish(outcomes, attempts, moved, now=now)
    return attempts


@dataclass(frozen=True)
class Share:
    """One batch's outcomes, to be written in one transaction with other batches'."""

    outcomes: Sequence[Outcome]
    token: str
    worker: str
    text_limit: int


def can_record_together(shares: Sequence[Share]) -> bool:
    """Whether :func:`record_together` can write ``shares``: on SQLite, outside a
    transaction, every outcome a plain send (anything else takes the general path, a
    transaction of its own per batch)."""
    return (
        connection.vendor == "sqlite"
        and not connection.in_atomic_block
        and all(is_plain_sent(o) for share in shares for o in share.outcomes)
    )


def record_together(shares: Sequence[Share], *, now: datetime) -> None:
    """Write several batches' plain sends (see :func:`can_record_together`) in one commit:
    the group commit of a process's delivery threads on SQLite (``outcome_writer``). Each
    batch's UPDATE is fenced on its own claim token, as :func:`record` fences it."""
    writes = [
        (
            [attempt_values(o, worker=s.worker, text_limit=s.text_limit) for o in s.outcomes],
            [o.message.pk for o in s.outcomes],
            s.token,
        )
        for s in shares
    ]
    moved = recording_sqlite.record_sent_many(writes, now=now)
    for share, count in zip(shares, moved, strict=True):
        made = signal_attempts(share.outcomes, worker=share.worker, text_limit=share.text_limit)
        finish(share.outcomes, made, count, now=now)


def prepare(outcomes: Sequence[Outcome], *, worker: str, text_limit: int) -> list[Attempt]:
    """The attempt rows to insert for ``outcomes`` (not saved)."""
    return [_attempt(o, worker=worker, text_limit=text_limit) for o in outcomes]


def signal_attempts(
    outcomes: Sequence[Outcome], *, worker: str, text_limit: int
) -> list[Attempt] | None:
    """The Attempts ``message_sent``'s receivers get for plain sends written without them,
    or None when there is no receiver (the usual case) and so nothing to make."""
    sent = signals.message_sent
    if not sent.receivers or not sent.has_listeners(Message):
        return None
    return prepare(outcomes, worker=worker, text_limit=text_limit)


def is_plain_sent(outcome: Outcome) -> bool:
    """Sent to every recipient, now and before: the outcome one UPDATE can write for many."""
    return (
        outcome.decision.action is Action.MARK_SENT
        and not _has_failed_recipients(outcome)
        and not outcome.message.refused_recipients
    )


def finish(
    outcomes: Sequence[Outcome],
    attempts: Sequence[Attempt] | None,
    moved: int,
    *,
    now: datetime,
) -> None:
    """After the write: warn about lost leases, mirror the state in memory, send signals.

    ``moved`` is how many of the plain sends were moved to sent (fewer if a lease was lost).
    ``attempts`` is None only where the outcomes are plain sends and nothing listens to
    ``message_sent``: the fast writes make no Attempt then (see :func:`signal_attempts`).
    """
    plain = sum(1 for o in outcomes if is_plain_sent(o))
    if moved != plain:
        logger.warning(
            "mailroom: %d of %d sent messages had lost their lease before being recorded",
            plain - moved,
            plain,
        )
    _apply_in_memory(outcomes, now)
    if attempts is not None:
        _signal(outcomes, attempts)


def _record_in_a_transaction(
    outcomes: Sequence[Outcome],
    attempts: Sequence[Attempt],
    plain_sent: set[int],
    *,
    token: str,
    now: datetime,
) -> int:
    """The general path: attempts in bulk, plain sends in one UPDATE, the rest one by one.

    Returns how many of ``plain_sent`` were moved to sent (fewer if a lease was lost).
    """
    with transaction.atomic():
        _commit_without_waiting_for_disk()
        Attempt.objects.bulk_create(attempts)
        moved = mark_sent(plain_sent, token=token, now=now)
        for outcome in outcomes:
            if outcome.message.pk not in plain_sent:
                _update_one(outcome, token=token, now=now)
    return moved


def _commit_without_waiting_for_disk() -> None:
    """On PostgreSQL, let this transaction's COMMIT return before its WAL reaches the disk.

    An outcome is written after every message, and waiting for an fsync each time would make
    the database, not the mail server, the limit. This setting is per transaction (the
    application's own transactions are untouched) and it cannot lose a write to a crashed
    worker, only to a crashed PostgreSQL server within its last fraction of a second; such a
    message is sent again when its lease runs out, so the guarantee stays at-least-once.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _has_failed_recipients(outcome: Outcome) -> bool:
    return any(r.state is RecipientState.FAILED for r in outcome.classification.recipients)


def _attempt(outcome: Outcome, *, worker: str, text_limit: int) -> Attempt:
    return Attempt(**attempt_values(outcome, worker=worker, text_limit=text_limit))


def attempt_values(outcome: Outcome, *, worker: str, text_limit: int) -> dict[str, Any]:
    """The attempt row of ``outcome``, field by field: what an Attempt is made of, and what
    the fast writes send without making one."""
    c = outcome.classification
    error = outcome.result.error
    return {
        "message_id": outcome.message.pk,
        "started_at": outcome.started_at,
        "duration": outcome.duration,
        "backend": outcome.message.backend,
        "worker": worker,
        "verdict": c.verdict.value,
        "charged": outcome.decision.charged,
        "code": c.code,
        "enhanced_code": c.enhanced_code or "",
        "error_type": _type_name(error) if error is not None else "",
        "error_text": describe(error)[:text_limit] if error is not None else "",
        "reason": c.reason[:text_limit],
        "recipients": {r.address: r.as_json() for r in c.recipients},
        "esp_message_id": (outcome.result.esp_message_id or "")[:255],
    }


def _type_name(error: BaseException) -> str:
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}"[:255]


def _update_one(outcome: Outcome, *, token: str, now: datetime) -> None:
    d = outcome.decision
    fields: dict[str, object] = {"claimed_by": "", "claimed_until": None, "reason": d.reason}
    refused = _refused_so_far(outcome)
    if refused != outcome.message.refused_recipients:
        fields["refused_recipients"] = refused
    if d.charged:
        fields["attempts"] = F("attempts") + 1
        fields["last_attempt_at"] = now
    if d.pending is not None and d.action is not Action.MARK_SENT:
        fields["pending_recipients"] = list(d.pending)
    if d.action is Action.MARK_SENT:
        fields.update(status=Status.SENT, sent_at=now, pending_recipients=[])
        fields["reason"] = _partial_reason(outcome)
    elif d.action is Action.RETRY_LATER:
        fields.update(status=Status.QUEUED, due_at=d.due_at)
    elif d.action is Action.FAIL:
        fields.update(status=Status.FAILED)
        delivered = _delivered_earlier(outcome.message)
        if delivered:
            fields["reason"] = f"{d.reason} (delivered earlier to {', '.join(delivered)})"
    else:  # REQUEUE_AND_PAUSE: back as it was; the paused backend holds it.
        fields.update(status=Status.QUEUED, reason=f"waiting for backend: {d.reason}")
    changed = Message.objects.filter(pk=outcome.message.pk, claimed_by=token).update(**fields)
    if not changed:
        logger.warning(
            "mailroom: message %s: lease lost before its outcome (%s) was recorded",
            outcome.message.pk,
            outcome.classification.verdict.value,
        )


def _delivered_earlier(message: Message) -> list[str]:
    """Recipients an earlier attempt of this message already reached."""
    if message.pending_recipients is None:
        return []
    left = set(message.pending_recipients) | set(message.refused_recipients or {})
    return [r for r in message.recipients if r not in left]


def _refused_so_far(outcome: Outcome) -> dict[str, str]:
    """Recipients refused for good by this attempt or an earlier one."""
    refused = dict(outcome.message.refused_recipients or {})
    for r in outcome.classification.recipients:
        if r.state is RecipientState.FAILED:
            refused[r.address] = r.detail or (str(r.code) if r.code else "refused")
    return refused


def _partial_reason(outcome: Outcome) -> str:
    refused = _refused_so_far(outcome)
    if not refused:
        return ""
    listed = "; ".join(f"{address}: {detail}" for address, detail in refused.items())
    return f"sent, but refused for good for {len(refused)} recipient(s): {listed}"


def _apply_in_memory(outcomes: Sequence[Outcome], now: datetime) -> None:
    """Mirror the written state on the in-memory rows (for signals and summaries)."""
    for o in outcomes:
        m, d = o.message, o.decision
        m.claimed_by, m.claimed_until = "", None
        if d.charged:
            m.attempts += 1
        if is_plain_sent(o):
            # Nobody refused, now or before: nothing to explain, nothing to keep.
            m.status, m.reason, m.refused_recipients = Status.SENT, "", {}
            continue
        m.status = {
            Action.MARK_SENT: Status.SENT,
            Action.RETRY_LATER: Status.QUEUED,
            Action.FAIL: Status.FAILED,
            Action.REQUEUE_AND_PAUSE: Status.QUEUED,
        }[d.action]
        if d.due_at is not None:
            m.due_at = d.due_at
        m.reason = d.reason if d.action is not Action.MARK_SENT else _partial_reason(o)
        m.refused_recipients = _refused_so_far(o)


def _signal(outcomes: Sequence[Outcome], attempts: Sequence[Attempt]) -> None:
    for outcome, attempt in zip(outcomes, attempts, strict=False):
        action, message = outcome.decision.action, outcome.message
        if _has_failed_recipients(outcome):
            # Before the signals, as when it was their first receiver.
            _auto_suppress(attempt)
        if action is Action.MARK_SENT:
            signals.send(signals.message_sent, Message, message=message, attempt=attempt)
        elif action is Action.RETRY_LATER:
            due_at = outcome.decision.due_at
            signals.send(
                signals.retry_scheduled, Message, message=message, attempt=attempt, due_at=due_at
            )
        elif action is Action.FAIL:
            reason = outcome.decision.reason
            signals.send(
                signals.message_failed, Message, message=message, attempt=attempt, reason=reason
            )


def _auto_suppress(attempt: Attempt) -> None:
    """Called here, only for an attempt some recipient refused for good, rather than connected
    to the signals: as a receiver it made every message sent go through ``send_robust``.
    Like a receiver, what it raises is logged and goes no further."""
    try:
        suppression.auto_suppress(Message, attempt=attempt)
    except Exception as exc:
        logger.error("mailroom: automatic suppression failed: %s: %s", type(exc).__name__, exc)


def fail_unattempted(message: Message, *, token: str, reason: str) -> bool:
    """Fail a claimed message without an attempt (it expired before it could be sent)."""
    changed = Message.objects.filter(pk=message.pk, claimed_by=token).update(
        status=Status.FAILED, reason=reason, claimed_by="", claimed_until=None
    )
    if changed:
        message.status, message.reason = Status.FAILED, reason
        signals.send(signals.message_failed, Message, message=message, attempt=None, reason=reason)
    return bool(changed)


def drop_recipients(drop: Drop, *, token: str) -> bool:
    """Take suppressed recipients off a claimed message, failing it if none is left.

    Returns True if the message is still to be delivered (to the recipients that are left).
    """
    message = drop.message
    fields: dict[str, object] = {
        "pending_recipients": drop.pending,
        "refused_recipients": drop.refused,
    }
    if drop.nothing_left:
        fields.update(status=Status.FAILED, reason=drop.reason, claimed_by="", claimed_until=None)
    changed = Message.objects.filter(pk=message.pk, claimed_by=token).update(**fields)
    message.pending_recipients, message.refused_recipients = drop.pending, drop.refused
    if not changed:
        return False
    if drop.nothing_left:
        message.status, message.reason = Status.FAILED, drop.reason
        logger.info("mailroom: message %s failed: %s", message.pk, drop.reason)
        signals.send(
            signals.message_failed, Message, message=message, attempt=None, reason=drop.reason
        )
        return False
    return True


def pause_backend(
    alias: str,
    classification: Classification,
    *,
    now: datetime,
    policy: RetryPolicy,
    rng: Callable[[], float],
) -> BackendState:
    """Pause ``alias`` for every worker, with its own backoff, and say why."""
    with transaction.atomic():
        state, _ = BackendState.objects.select_for_update().get_or_create(alias=alias)
        state.failures += 1
        seconds = backend_pause(
            classification.verdict,
            failures=state.failures,
            retry_after=classification.retry_after,
            policy=policy,
            rng=rng,
        )
        state.paused_until = now + timedelta(seconds=seconds)
        state.verdict = classification.verdict.value
        state.reason = classification.reason
        state.save()
    log = (
        logger.error if classification.verdict is Verdict.BACKEND_MISCONFIGURED else logger.warning
    )
    log(
        "mailroom: backend %r paused for %.1f s (%s): %s",
        alias,
        seconds,
        classification.verdict.value,
        classification.reason,
    )
    signals.send(
        signals.backend_paused,
        BackendState,
        alias=alias,
        until=state.paused_until,
        verdict=state.verdict,
        reason=state.reason,
    )
    return state


def mark_backends_healthy(aliases: Sequence[str]) -> None:
    """A backend that delivered again is no longer counted as failing."""
    if aliases:
        BackendState.objects.filter(alias__in=list(aliases)).update(
            failures=0, paused_until=None, verdict="", reason=""
        )
