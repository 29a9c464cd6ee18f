"""The writer thread (``outcome_writer``) and the delivery thread meet only at the barrier:
``submit`` never waits, ``settle`` waits for everything submitted and surfaces a failed
write as RecordingFailed, for that outcome and every later one."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import DatabaseError, connection

from mailroom.batch import RecordingFailed
from mailroom.outcome_writer import private

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "sqlite", reason="the writer thread's SQLite side"),
]


class FakeBatch:
    """What a writer thread needs of a Batch: ``write_now``, here recording what it was given."""

    def __init__(self, *, delay: float = 0.0, fail_on: object = None) -> None:
        self.delay = delay
        self.fail_on = fail_on
        self.written: list[Any] = []
        self.threads: set[int] = set()
        self.gate = threading.Event()
        self.gate.set()

    def write_now(self, outcomes: list[Any]) -> None:
        self.threads.add(threading.get_ident())
        self.gate.wait(5)
        time.sleep(self.delay)
        if self.fail_on in outcomes:
            raise DatabaseError("disk I/O error")
        self.written.extend(outcomes)


def test_settle_waits_for_every_outcome_submitted() -> None:
    batch = FakeBatch(delay=0.005)
    writer = private(batch)  # type: ignore[arg-type]
    try:
        for i in range(20):
            writer.submit(i)  # type: ignore[arg-type]
        writer.settle()
        assert batch.written == list(range(20))
        assert threading.get_ident() not in batch.threads
    finally:
        writer.close()


def test_submit_never_waits_for_the_write_in_progress() -> None:
    batch = FakeBatch()
    batch.gate.clear()  # the writer is stuck in its first write
    writer = private(batch)  # type: ignore[arg-type]
    try:
        started = time.monotonic()
        for i in range(3):
            writer.submit(i)  # type: ignore[arg-type]
        assert time.monotonic() - started < 1
        assert batch.written == []
        batch.gate.set()
        writer.settle()
        assert batch.written == [0, 1, 2]
    finally:
        writer.close()


def test_settle_with_nothing_submitted_returns_at_once() -> None:
    writer = private(FakeBatch())  # type: ignore[arg-type]
    try:
        writer.settle()
        writer.settle()
    finally:
        writer.close()


def test_a_failed_write_is_raised_at_the_barrier_and_at_every_later_submit() -> None:
    batch = FakeBatch(fail_on=1)
    writer = private(batch)  # type: ignore[arg-type]
    try:
        writer.submit(0)  # type: ignore[arg-type]
        writer.settle()
        writer.submit(1)  # type: ignore[arg-type]
        with pytest.raises(RecordingFailed, match="disk I/O error"):
            writer.settle()
        with pytest.raises(RecordingFailed):
            writer.submit(2)  # type: ignore[arg-type]
        with pytest.raises(RecordingFailed):
            writer.settle()
        assert batch.written == [0]
    finally:
        writer.close()
