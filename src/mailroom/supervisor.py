"""``mailroom worker --processes N``: N worker processes under one supervisor.

Threads in one worker share one interpreter lock, so a fast backend (local SMTP, a relay on
the same network) is delivered to faster by processes. The supervisor forks each worker
process from itself, with no database connection open, and then only watches:

- A worker process that dies (SIGKILL, out of memory, a crash) is started again, after a
  pause that doubles while it keeps dying young (up to a minute). What it had claimed goes
  back to the queue when the lease runs out, as for any killed worker.
- SIGTERM or SIGINT to the supervisor is passed on as one SIGTERM to every worker process:
  each finishes what is in flight and returns the rest to the queue. A second signal is
  passed on too, and the workers exit at once. The supervisor exits 0 if every worker
  stopped cleanly.
- CONTROL-C in a terminal signals the whole process group; the worker processes ignore
  SIGINT and take their stop from the supervisor only, so that one CONTROL-C is one stop
  and not the "second signal, exit now".
- A worker process whose supervisor is gone (killed with SIGKILL) stops as if signalled:
  no orphan keeps delivering with nobody watching it.
- With ``--burst`` every worker process exits when nothing is left to send, and so does the
  supervisor; a worker process killed by a signal (SIGKILL, out of memory) is started again
  until the queue is drained. One that exits with an error (it gave up on a failing database
  after ``MAILROOM["BURST_PATIENCE"]``) is not: it would only fail again, for ever; the
  supervisor exits 1 once the others are done.

The processes are forked, not spawned: a project configured any way at all (settings module,
``settings.configure()``) is inherited as it is. That needs ``fork``, i.e. Linux or another
Unix.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Protocol

from django.db import connections

logger = logging.getLogger(__name__)

#: A worker process that lived this long before dying is restarted without delay growing.
_HEALTHY_AFTER = 60.0
_MAX_RESTART_DELAY = 60.0
#: How long the supervisor allows beyond the workers' own stop timeout before it kills them.
_STOP_GRACE = 5.0


class WorkerLike(Protocol):
    """What the supervisor needs of a worker (``mailroom.runner.Worker``)."""

    def run(self) -> int: ...

    def stop(self) -> None: ...


@dataclass
class _Slot:
    number: int
    process: BaseProcess | None = None
    started_at: float = 0.0
    restart_at: float = 0.0
    delay: float = 0.0
    done: bool = False
    #: How its last worker process ended (None: none has ended yet).
    exit_code: int | None = None


class Supervisor:
    """Run ``processes`` worker processes, each built by ``make_worker(number)`` after the
    fork: ``number`` is the process's place, 0 to ``processes - 1``, kept by its restarts."""

    def __init__(
        self,
        *,
        processes: int,
        make_worker: Callable[[int], WorkerLike],
        burst: bool,
        stop_timeout: float,
        say: Callable[[str], None] = print,
    ) -> None:
        self.slots = [_Slot(n) for n in range(max(1, processes))]
        self.make_worker = make_worker
        self.burst = burst
        self.stop_timeout = stop_timeout
        self.say = say
        self._signals = 0
        self._stop_deadline: float | None = None
        #: Which worker processes ended with an error, once ``run`` has returned 1.
        self.failure: str | None = None
        self._context = multiprocessing.get_context("fork")

    def run(self) -> int:
        """Start the worker processes and watch them until they have all ended."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        # A forked child inherits open sockets and unflushed buffers: close and flush first.
        connections.close_all()
        self.say(
            f"mailroom worker supervisor {os.getpid()}: {len(self.slots)} processes; "
            "stop with SIGTERM or CONTROL-C"
        )
        for slot in self.slots:
            self._start(slot)
        while not all(slot.done for slot in self.slots):
            self._wait_a_little()
            self._reap()
            if self._stop_deadline is not None and time.monotonic() > self._stop_deadline:
                logger.error(
                    "mailroom: worker processes did not stop within %.0f s; killing them",
                    self.stop_timeout + _STOP_GRACE,
                )
                self._send(signal.SIGKILL)
                return 1
        failed = [s.number for s in self.slots if s.exit_code not in (None, 0)]
        if failed:
            self.failure = f"worker process(es) {', '.join(map(str, failed))} exited with an error"
        self.say(f"mailroom worker supervisor {os.getpid()}: stopped")
        return 1 if failed else 0

    # -- the children ---------------------------------------------------------------------

    def _start(self, slot: _Slot) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        process = self._context.Process(
            target=_child_main,
            args=(self.make_worker, parent, slot.number),
            name=f"mailroom-worker-{slot.number}",
        )
        process.start()
        slot.process = process
        slot.started_at = time.monotonic()

    def _wait_a_little(self) -> None:
        sentinels = [s.process.sentinel for s in self.slots if s.process is not None]
        pending = [s.restart_at for s in self.slots if s.process is None and not s.done]
        timeout = 0.5
        if pending:
            timeout = max(0.0, min(timeout, min(pending) - time.monotonic()))
        if sentinels:
            multiprocessing.connection.wait(sentinels, timeout)
        else:
            time.sleep(timeout)

    def _reap(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.done:
                continue
            if slot.process is None:
                if now >= slot.restart_at and not self._stopping:
                    self._start(slot)
                elif self._stopping:
                    slot.done = True
                continue
            if slot.process.is_alive():
                continue
            code = slot.process.exitcode
            slot.process.join()
            slot.process = None
            slot.exit_code = code if code is not None else 1
            if self._stopping or (self.burst and code is not None and code >= 0):
                slot.done = True
                continue
            lived = now - slot.started_at
            slot.delay = (
                0.0
                if lived >= _HEALTHY_AFTER
                else min(max(1.0, slot.delay * 2), _MAX_RESTART_DELAY)
            )
            slot.restart_at = now + slot.delay
            logger.error(
                "mailroom: worker process %d exited with %s after %.1f s; restarting it in %.0f s",
                slot.number,
                _describe(code),
                lived,
                slot.delay,
            )

    # -- signals ------------------------------------------------------------------------------

    @property
    def _stopping(self) -> bool:
        return self._signals > 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            logger.warning(
                "mailroom: %s: stopping the worker processes", signal.Signals(signum).name
            )
            self._stop_deadline = time.monotonic() + self.stop_timeout + _STOP_GRACE
        else:
            logger.warning("mailroom: second signal: the worker processes exit now")
        self._send(signal.SIGTERM)

    def _send(self, signum: int) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, signum)


def _describe(code: int | None) -> str:
    if code is not None and code < 0:
        return signal.Signals(-code).name
    return f"code {code}"


def _child_main(make_worker: Callable[[int], WorkerLike], parent: int, number: int) -> None:
    """A worker process: its stop comes from the supervisor, or from the supervisor's death."""
    # Until the worker installs its own handler, SIGTERM ends the process (nothing is claimed
    # yet); SIGINT is the terminal's, and the supervisor passes it on as SIGTERM.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker = make_worker(number)
    threading.Thread(
        target=_watch_parent, args=(parent, worker), name="mailroom-parent-watch", daemon=True
    ).start()
    code = worker.run()
    sys.stdout.flush()
    sys.exit(code)


def _watch_parent(parent: int, worker: WorkerLike) -> None:
    # A child of a dead parent is re-parented (to init or a subreaper): its ppid changes.
    while os.getppid() == parent:
        time.sleep(0.5)
    logger.warning("mailroom: the worker supervisor %d is gone; stopping", parent)
    worker.stop()
