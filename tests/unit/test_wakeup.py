"""The idle worker's wait: a stop asked for just before it begins must end it at once."""

from __future__ import annotations

import threading
import time

from mailroom.wakeup import Waiter


def test_a_stop_asked_for_before_the_wait_begins_ends_it_at_once() -> None:
    # The worker's loop found nothing to send; SIGTERM came (stopping set, everyone woken)
    # before the thread reached its wait. That wake-up is spent: only `unless` can end it.
    waiter, stopping = Waiter(), threading.Event()
    stopping.set()
    waiter.wake_all()
    started = time.monotonic()
    waiter.wait(60, unless=stopping.is_set)
    assert time.monotonic() - started < 10


def test_a_wake_up_during_the_wait_ends_it() -> None:
    waiter = Waiter()
    threading.Timer(0.1, waiter.wake_all).start()
    started = time.monotonic()
    waiter.wait(60)
    assert time.monotonic() - started < 10


def test_a_wake_up_before_the_wait_does_not_end_it() -> None:
    waiter = Waiter()
    waiter.wake_all()
    started = time.monotonic()
    waiter.wait(0.2)
    assert time.monotonic() - started >= 0.15
