"""The retry policy, exhaustively: it is pure, so every rule is checked with exact values."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mailroom.outcomes import Classification, RecipientResult, RecipientState, Verdict
from mailroom.retry import Action, RetryPolicy, backend_pause, decide, message_backoff

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
POLICY = RetryPolicy(max_attempts=5, max_age=3600, base=60, factor=2, cap=600)


def top() -> float:
    return 1.0


def bottom() -> float:
    return 0.0


def decide_for(verdict: Verdict, *, attempts: int = 0, age: float = 0, **kw: object):
    c = Classification(verdict=verdict, reason="why", **kw)  # type: ignore[arg-type]
    return decide(
        c,
        attempts=attempts,
        created_at=NOW - timedelta(seconds=age),
        now=NOW,
        pending=["a@x.org", "b@x.org"],
        policy=POLICY,
        rng=top,
    )


def test_sent_is_marked_sent_and_charged() -> None:
    d = decide_for(Verdict.SENT)
    assert (d.action, d.charged, d.pending) == (Action.MARK_SENT, True, ())


def test_permanent_failure_stops_at_once_whatever_the_budget() -> None:
    d = decide_for(Verdict.FAILED, attempts=0)
    assert (d.action, d.charged, d.reason) == (Action.FAIL, True, "why")


@pytest.mark.parametrize("verdict", [Verdict.BACKEND_DOWN, Verdict.BACKEND_MISCONFIGURED])
def test_backend_fault_requeues_without_charging_even_when_budget_is_spent(verdict) -> None:
    d = decide_for(verdict, attempts=99, age=10**9)
    assert (d.action, d.charged, d.due_at) == (Action.REQUEUE_AND_PAUSE, False, None)


def test_transient_failure_is_retried_with_exponential_backoff() -> None:
    # third charged attempt (2 before): ceiling 60 * 2**2 = 240 s; rng at its top.
    d = decide_for(Verdict.RETRY, attempts=2)
    assert d.action is Action.RETRY_LATER
    assert d.due_at == NOW + timedelta(seconds=240)
    assert d.pending == ("a@x.org", "b@x.org")


def test_backoff_is_capped() -> None:
    assert message_backoff(30, POLICY, top) == 600


def test_backoff_has_full_jitter() -> None:
    assert message_backoff(3, POLICY, bottom) == 0
    assert message_backoff(3, POLICY, lambda: 0.5) == 120


def test_attempt_budget_fails_the_message_with_reason() -> None:
    d = decide_for(Verdict.RETRY, attempts=4)
    assert d.action is Action.FAIL
    assert d.reason == "gave up after 5 attempts: why"


def test_age_budget_fails_the_message_with_reason() -> None:
    d = decide_for(Verdict.RETRY, attempts=0, age=3600)
    assert d.action is Action.FAIL
    assert d.reason.startswith("gave up after 1.0 hours in the queue")


def test_retry_after_is_a_floor_for_a_message_retry() -> None:
    d = decide_for(Verdict.RETRY, attempts=0, retry_after=500)
    assert d.due_at == NOW + timedelta(seconds=500)


def test_retry_recipients_keeps_only_the_refused_for_now() -> None:
    c = Classification(
        verdict=Verdict.RETRY_RECIPIENTS,
        reason="greylisted",
        recipients=(
            RecipientResult(address="a@x.org", state=RecipientState.SENT),
            RecipientResult(address="b@x.org", state=RecipientState.RETRY, code=451),
        ),
    )
    d = decide(
        c,
        attempts=0,
        created_at=NOW,
        now=NOW,
        pending=["a@x.org", "b@x.org"],
        policy=POLICY,
        rng=top,
    )
    assert d.action is Action.RETRY_LATER
    assert d.pending == ("b@x.org",)


def test_unexpected_exception_is_retried_within_the_same_bounded_budget() -> None:
    assert decide_for(Verdict.RETRY, attempts=1, unexpected=True).action is Action.RETRY_LATER
    assert decide_for(Verdict.RETRY, attempts=4, unexpected=True).action is Action.FAIL


def test_backend_pause_grows_exponentially_with_equal_jitter() -> None:
    policy = RetryPolicy(backend_base=10, backend_cap=100)
    pauses = [
        backend_pause(Verdict.BACKEND_DOWN, failures=n, retry_after=None, policy=policy, rng=bottom)
        for n in (1, 2, 3, 10)
    ]
    assert pauses == [5, 10, 20, 50]


def test_misconfigured_backend_probes_rarely() -> None:
    policy = RetryPolicy(misconfigured_base=300, misconfigured_cap=3600)
    pause = backend_pause(
        Verdict.BACKEND_MISCONFIGURED, failures=1, retry_after=None, policy=policy, rng=top
    )
    assert pause == 300


def test_retry_after_sets_the_backend_pause_capped() -> None:
    policy = RetryPolicy(retry_after_cap=100)
    assert (
        backend_pause(Verdict.BACKEND_DOWN, failures=5, retry_after=7, policy=policy, rng=top) == 7
    )
    assert (
        backend_pause(Verdict.BACKEND_DOWN, failures=1, retry_after=10**6, policy=policy, rng=top)
        == 100
    )
