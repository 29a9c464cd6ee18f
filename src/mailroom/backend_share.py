"""One backend's share of a batch, delivered message by message over one session.

The loop that :class:`~mailroom.worker.Engine` runs for each backend a batch touches: it
keeps the lease alive, fails what expired, waits its turn under a rate limit, delivers, and
turns every result into an :class:`~mailroom.recording.Outcome` through a :class:`Judge`
(the pure ``classification`` and ``retry`` modules). A message's fate never stops the loop;
a backend fault stops only this share: the message at fault gets an uncharged attempt, the
rest go back to the queue untouched, and the backend is paused for every worker.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from .batch import Batch
from .claiming import release
from .classification import Rule, classify
from .delivery import DeliverySession
from .loading import let_go, prefetch_mime
from .models import Message
from .outcomes import Classification, DeliveryResult, Verdict
from .ratelimit import Rate, Throttle
from .recording import Outcome, fail_unattempted, pause_backend
from .retry import Action, RetryPolicy, decide

if TYPE_CHECKING:
    from .worker import RunStats

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Judge:
    """What a delivery's result means and what happens next, with a run's rules and policy."""

    rules: tuple[Rule, ...]
    policy: RetryPolicy
    clock: Callable[[], datetime]
    rng: Callable[[], float]

    def conclude(
        self, message: Message, result: DeliveryResult, started_at: datetime, duration: float
    ) -> Outcome:
        classification = classify(result, rules=self.rules)
        return self.outcome(message, result, classification, started_at, duration)

    def outcome(
        self,
        message: Message,
        result: DeliveryResult,
        classification: Classification,
        started_at: datetime,
        duration: float,
    ) -> Outcome:
        decision = decide(
            classification,
            attempts=message.attempts,
            created_at=message.budget_since or message.created_at,
            now=self.clock(),
            pending=result.recipients,
            policy=self.policy,
            rng=self.rng,
        )
        _log(message, classification, decision.action)
        return Outcome(
            message=message,
            result=result,
            classification=classification,
            decision=decision,
            started_at=started_at,
            duration=duration,
        )


def deliver_share(
    session: DeliverySession,
    *,
    opened: bool,
    alias: str,
    group: list[Message],
    batch: Batch,
    stats: RunStats,
    stop: threading.Event | None,
    judge: Judge,
    rate: Rate | None,
) -> bool:
    """Deliver ``group`` (all for backend ``alias``) over ``session``, opening it unless
    ``opened``. Returns True if the backend stayed healthy."""
    clock = judge.clock
    throttle = Throttle(alias, rate, clock) if rate else None
    opened_at, t0 = clock(), time.perf_counter()
    try:
        if not opened:
            session.open()
    except Exception as exc:
        result = DeliveryResult(recipients=tuple(group[0].pending), error=exc)
        duration = time.perf_counter() - t0
        _backend_fault(alias, group, 0, result, opened_at, duration, batch, stats, judge)
        return False
    for index, message in enumerate(group):
        if stop is not None and stop.is_set():
            batch.settle()
            release([m.pk for m in group[index:]], token=batch.token)
            return True
        batch.keep_lease()
        if message.expires_at is not None and message.expires_at <= clock():
            batch.settle()
            fail_unattempted(message, token=batch.token, reason="expired before it could be sent")
            stats.actions[Action.FAIL.value] += 1
            continue
        if throttle and not throttle.wait_turn(
            len(group) - index, stop=stop, keep_alive=batch.keep_lease
        ):
            batch.settle()
            release([m.pk for m in group[index:]], token=batch.token)
            return True
        now = clock()
        t0 = time.perf_counter()
        following = group[index + 1] if index + 1 < len(group) else None
        result = session.deliver(
            message,
            before_commit=batch.settle,
            while_waiting=batch.conclude_deferred,
            after_dot=functools.partial(_after_dot, batch, following),
            # Its envelope may go out with this message's dot, unless a rate limit may make
            # it wait its turn with the server waiting for its bytes.
            following=following if throttle is None else None,
        )
        duration = time.perf_counter() - t0
        let_go(message)
        if session.fast_path and result.error is None and not result.refused:
            conclude = functools.partial(judge.conclude, message, result, now, duration)
            if session.announced:
                # The next envelope went out with this message's dot and is answered by now:
                # nothing is left to hide the write behind but the work up to the next
                # message's bytes, so it starts at once.
                batch.add(conclude())
            else:
                # Taken by the server, whole: its bookkeeping waits for the next message's
                # MAIL FROM to be on its way (Batch.defer).
                batch.defer(conclude)
            continue
        batch.conclude_deferred()
        classification = classify(result, rules=judge.rules)
        if classification.verdict.is_backend_fault:
            _backend_fault(
                alias, group, index, result, now, duration, batch, stats, judge, classification
            )
            return False
        batch.add(judge.outcome(message, result, classification, now, duration))
    return True


def _after_dot(batch: Batch, following: Message | None) -> None:
    """While the server takes a message: the batch's bookkeeping, then the next message's
    bytes if they are still in the database (a large one's, see claiming.INLINE_MIME)."""
    batch.tidy()
    if following is not None:
        prefetch_mime(following)


def _backend_fault(
    alias: str,
    group: list[Message],
    index: int,
    result: DeliveryResult,
    started_at: datetime,
    duration: float,
    batch: Batch,
    stats: RunStats,
    judge: Judge,
    classification: Classification | None = None,
) -> None:
    """Stop this backend's share: the message at ``index`` gets an uncharged attempt, the
    rest go back untouched, and the backend is paused for every worker."""
    c = classification or classify(result, rules=judge.rules)
    if not c.verdict.is_backend_fault:
        # Whatever stops a backend from opening is the backend's fault, not a message's.
        c = replace(c, verdict=Verdict.BACKEND_DOWN, reason=f"cannot connect: {c.reason}")
    batch.add(judge.outcome(group[index], result, c, started_at, duration))
    batch.settle()
    release([m.pk for m in group[index + 1 :]], token=batch.token)
    pause_backend(alias, c, now=judge.clock(), policy=judge.policy, rng=judge.rng)
    stats.paused.add(alias)


def _log(message: Message, c: Classification, action: Action) -> None:
    if c.unexpected:
        logger.error("mailroom: message %s: unexpected error, will retry: %s", message.pk, c.reason)
    elif action is Action.MARK_SENT:
        logger.debug("mailroom: message %s: sent", message.pk)
    elif action is Action.FAIL:
        logger.warning("mailroom: message %s: failed: %s", message.pk, c.reason)
    else:
        logger.info("mailroom: message %s: %s: %s", message.pk, c.verdict.value, c.reason)
