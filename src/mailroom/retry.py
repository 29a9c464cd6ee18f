"""The retry policy: a classification plus the message's history becomes a decision. Pure.

No database, no network, no clock: ``now`` and the random source are passed in, so every rule
here is tested exhaustively in ``tests/unit/test_retry.py``.

Two budgets bound a message that keeps failing transiently: a count of *charged* attempts and
an age since enqueue (RFC 5321 §4.5.4.1 states the give-up rule as time in queue; Postfix's
``maximal_queue_lifetime`` does the same). Backend faults are never charged: an outage must not
burn every queued message's budget, which is what django-mailer and post_office do.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .conf import MailroomSettings
from .outcomes import Classification, Verdict


class Action(str, enum.Enum):
    MARK_SENT = "mark_sent"
    RETRY_LATER = "retry_later"
    FAIL = "fail"
    #: Put the message back as it was (uncharged) and pause its backend.
    REQUEUE_AND_PAUSE = "requeue_and_pause"


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    max_attempts: int = 10
    max_age: float = 4 * 24 * 3600
    base: float = 60
    factor: float = 2.0
    cap: float = 6 * 3600
    backend_base: float = 15
    backend_cap: float = 600
    misconfigured_base: float = 300
    misconfigured_cap: float = 3600
    retry_after_cap: float = 6 * 3600

    @classmethod
    def from_settings(cls, s: MailroomSettings) -> RetryPolicy:
        return cls(
            max_attempts=s.max_attempts,
            max_age=s.max_age,
            base=s.backoff_base,
            factor=s.backoff_factor,
            cap=s.backoff_cap,
            backend_base=s.backend_backoff_base,
            backend_cap=s.backend_backoff_cap,
            misconfigured_base=s.misconfigured_backoff_base,
            misconfigured_cap=s.misconfigured_backoff_cap,
            retry_after_cap=s.retry_after_cap,
        )


@dataclass(frozen=True, kw_only=True)
class Decision:
    action: Action
    reason: str
    #: Whether this attempt counts against the retry budget.
    charged: bool
    #: When the message may next be attempted (RETRY_LATER).
    due_at: datetime | None = None
    #: The recipients still to deliver after this attempt; None leaves them unchanged.
    pending: tuple[str, ...] | None = None


Random = Callable[[], float]


def message_backoff(attempt: int, policy: RetryPolicy, rng: Random) -> float:
    """Seconds to wait after the ``attempt``-th charged attempt: exponential, full jitter.

    Full jitter (a uniform draw between 0 and the capped exponential) spreads the retries of
    many messages that failed together, rather than having them all return at once.
    """
    ceiling = min(policy.cap, policy.base * policy.factor ** max(attempt - 1, 0))
    return rng() * ceiling


def backend_pause(
    verdict: Verdict,
    *,
    failures: int,
    retry_after: float | None,
    policy: RetryPolicy,
    rng: Random,
) -> float:
    """Seconds to pause a backend after its ``failures``-th consecutive fault.

    A server's own ``Retry-After`` wins (capped). Otherwise "equal jitter": half the capped
    exponential plus a random half, so a pause is never close to zero while an outage lasts.
    """
    if retry_after is not None and retry_after >= 0:
        return min(retry_after, policy.retry_after_cap)
    if verdict is Verdict.BACKEND_MISCONFIGURED:
        base, cap = policy.misconfigured_base, policy.misconfigured_cap
    else:
        base, cap = policy.backend_base, policy.backend_cap
    ceiling = min(cap, base * 2.0 ** max(failures - 1, 0))
    return float(ceiling / 2 + rng() * ceiling / 2)


def decide(
    classification: Classification,
    *,
    attempts: int,
    created_at: datetime,
    now: datetime,
    pending: Sequence[str],
    policy: RetryPolicy,
    rng: Random,
) -> Decision:
    """What to do with a message after one attempt.

    ``attempts`` is the number of charged attempts *before* this one; ``pending`` the
    recipients this attempt tried.
    """
    verdict = classification.verdict
    reason = classification.reason
    if verdict is Verdict.SENT:
        return Decision(action=Action.MARK_SENT, reason=reason, charged=True, pending=())
    if verdict.is_backend_fault:
        return Decision(action=Action.REQUEUE_AND_PAUSE, reason=reason, charged=False)
    if verdict is Verdict.FAILED:
        return Decision(action=Action.FAIL, reason=reason, charged=True)

    # RETRY or RETRY_RECIPIENTS: charged, and bounded by both budgets.
    still_pending = (
        classification.recipients_to_retry
        if verdict is Verdict.RETRY_RECIPIENTS
        else tuple(pending)
    )
    made = attempts + 1
    if made >= policy.max_attempts:
        return Decision(
            action=Action.FAIL,
            reason=f"gave up after {made} attempts: {reason}",
            charged=True,
            pending=still_pending,
        )
    age = (now - created_at).total_seconds()
    if age >= policy.max_age:
        return Decision(
            action=Action.FAIL,
            reason=f"gave up after {_human(age)} in the queue: {reason}",
            charged=True,
            pending=still_pending,
        )
    delay = message_backoff(made, policy, rng)
    if classification.retry_after is not None:
        delay = max(delay, min(classification.retry_after, policy.retry_after_cap))
    return Decision(
        action=Action.RETRY_LATER,
        reason=reason,
        charged=True,
        due_at=now + timedelta(seconds=delay),
        pending=still_pending,
    )


def _human(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds:.0f} seconds"
