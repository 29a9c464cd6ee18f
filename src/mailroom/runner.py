"""The long-running worker process: ``manage.py mailroom worker``.

Threads, each with its own database connection and its own backend connections, run the
:class:`~mailroom.worker.Engine` in a loop; an idle thread sleeps until mail may be due
(``mailroom.wakeup``). The process stops on SIGTERM or SIGINT: messages in flight are
finished and recorded, what was claimed but not started goes back to the queue, and it exits
0 within ``stop_timeout`` seconds. A second signal exits at once (claimed messages are then
returned to the queue when their lease runs out). A database that goes away is waited for;
with ``burst``, for ``MAILROOM["BURST_PATIENCE"]`` seconds at most.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from .claiming import reclaim_expired
from .conf import get_settings
from .wakeup import Waiter, next_wakeup
from .worker import Engine, RunStats, make_worker_id

logger = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        *,
        concurrency: int = 1,
        burst: bool = False,
        batch_size: int | None = None,
        poll_interval: float | None = None,
        stop_timeout: float = 30.0,
        say: Callable[[str], None] = print,
        stop_signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT),
    ) -> None:
        settings = get_settings()
        self.concurrency = max(1, concurrency)
        self.burst = burst
        if batch_size is not None and batch_size < 1:
            # Refused here, not in each delivery thread's Engine once the worker runs.
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.batch_size = batch_size
        if poll_interval is not None and not poll_interval > 0:
            # A negative interval was a worker polling its database in a busy loop.
            raise ValueError(f"poll_interval must be more than 0 seconds, not {poll_interval}")
        self.poll_interval = poll_interval if poll_interval is not None else settings.poll_interval
        self.stop_timeout = stop_timeout
        self.lease = settings.lease
        # A burst is a one-shot run (cron, a deploy step) whose retry is the next run: waiting
        # for ever, as a long-running worker does, left each run waiting behind the last one
        # for a database that did not exist. The default rides out a restart or a deadlock.
        self.burst_patience = settings.burst_patience
        self.say = say
        self.stop_signals = stop_signals
        self.worker_id = make_worker_id()
        self.stopping = threading.Event()
        self.waiter = Waiter()
        self.stats = [RunStats() for _ in range(self.concurrency)]
        #: Why a burst gave up (``burst_patience``); None while it has not.
        self.failure: str | None = None
        self._signals = 0

    def run(self) -> int:
        """Run until stopped (or, with ``burst``, until nothing is due). Returns the exit code."""
        self._install_signal_handlers()
        self.waiter.start()
        threads = [
            threading.Thread(target=self._loop, args=(n,), name=f"mailroom-{n}", daemon=True)
            for n in range(self.concurrency)
        ]
        for thread in threads:
            thread.start()
        self.say(
            f"mailroom worker {self.worker_id}: {self.concurrency} thread(s); "
            "stop with SIGTERM or CONTROL-C"
        )
        stop_deadline: float | None = None
        while any(t.is_alive() for t in threads):
            # Joining with a short timeout keeps the main thread where signal handlers run.
            for thread in threads:
                thread.join(0.1)
            if self.stopping.is_set() and stop_deadline is None:
                stop_deadline = time.monotonic() + self.stop_timeout
            if stop_deadline is not None and time.monotonic() > stop_deadline:
                logger.error("mailroom: worker did not stop within %.0f s", self.stop_timeout)
                return 1
        self.waiter.stop()
        total = sum(s.sent for s in self.stats)
        self.say(f"mailroom worker {self.worker_id}: stopped; {total} sent")
        return 1 if self.failure else 0

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in self.stop_signals:
            signal.signal(signum, self._on_signal)

    def stop(self) -> None:
        """Finish the messages in flight, return the rest to the queue, and end ``run``."""
        self.stopping.set()
        self.waiter.wake_all()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            logger.warning("mailroom: second signal: exiting now")
            os._exit(1)
        logger.warning(
            "mailroom: %s: finishing the messages in flight, then stopping",
            signal.Signals(signum).name,
        )
        self.stop()

    def _loop(self, number: int) -> None:
        engine = Engine(worker_id=f"{self.worker_id}/{number}", batch_size=self.batch_size)
        stats = self.stats[number]
        next_reclaim = 0.0
        failing_since: float | None = None
        # One thread delivering claims its next batch ahead; several overlap their claims
        # with each other's sending already, and a claiming thread each would double the
        # database connections.
        run = contextlib.ExitStack()
        try:
            run.enter_context(engine.running(claim_ahead=self.concurrency == 1))
            while not self.stopping.is_set():
                try:
                    if time.monotonic() >= next_reclaim:
                        # Moved on first: a reclaim that fails must not run before every
                        # batch, holding up the sending.
                        next_reclaim = time.monotonic() + max(self.lease / 4, 1.0)
                        reclaim_expired(timezone.now())
                    claimed = engine.run_batch(stats, stop=self.stopping)
                    if claimed:
                        failing_since = None
                        continue
                    if self.burst:
                        return
                    self.waiter.wait(
                        next_wakeup(timezone.now(), self.poll_interval),
                        unless=self.stopping.is_set,
                    )
                    failing_since = None
                except DatabaseError as exc:
                    failing_since = failing_since or time.monotonic()
                    waited = time.monotonic() - failing_since
                    if self._gives_up(waited, "the database has been unavailable", exc):
                        return
                    logger.warning(
                        "mailroom: database unavailable for %.0f s (%s); waiting", waited, exc
                    )
                    _drop_connection()
                    self.stopping.wait(min(1.0 + waited / 2, 10.0))
                except Exception as exc:
                    # An engine bug must not kill the thread: log it, breathe, go on.
                    failing_since = failing_since or time.monotonic()
                    waited = time.monotonic() - failing_since
                    if self._gives_up(waited, "an unexpected error has repeated", exc):
                        return
                    logger.exception("mailroom: unexpected error in the worker loop")
                    self.stopping.wait(1.0)
        finally:
            with contextlib.suppress(Exception):
                run.close()  # a batch claimed ahead goes back to the queue
            connection.close()

    def _gives_up(self, waited: float, why: str, exc: Exception) -> bool:
        """With ``burst``, once failing for ``burst_patience`` s: say why, stop every thread
        and make ``run`` exit 1. What they claimed goes back to the queue as at any stop (or,
        if the database cannot take it, when its lease runs out)."""
        if not self.burst or waited < self.burst_patience:
            return False
        if self.failure is None:
            self.failure = f"{why} for {waited:.0f} s ({type(exc).__name__}: {exc}); gave up"
            logger.error("mailroom worker --burst: %s", self.failure)
        self.stop()
        return True


def _drop_connection() -> None:
    with contextlib.suppress(DatabaseError):
        connection.close()
    close_old_connections()
