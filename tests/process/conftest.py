"""Real worker processes for the process tests: started with ``manage.py mailroom worker``,
stopped with SIGTERM, killed with SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "django", "mailroom", "worker", *args],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # A process group of its own: a test can signal it as a terminal does, and the
            # teardown can kill every process in it, worker processes orphaned by a killed
            # supervisor included.
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.started = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if "stop with SIGTERM" in line:
                self.started.set()

    def wait_started(self, timeout: float = 30) -> None:
        if not self.started.wait(timeout):
            raise AssertionError("worker did not start:\n" + self.output)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def children(self) -> list[int]:
        """The pids of this process's children (a supervisor's worker processes)."""
        return children_of(self.proc.pid)


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an exited child nobody has reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def spawn_worker(smtp_server) -> Iterator[Callable[..., WorkerProcess]]:
    """``spawn_worker("--concurrency", "4", LEASE=2)``: a worker on the test database."""
    started: list[WorkerProcess] = []

    def spawn(*args: str, db_port: str | None = None, **settings: object) -> WorkerProcess:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.process_settings",
            "PYTHONPATH": str(ROOT),
            "MAILROOM_WORKER_DB_NAME": str(connection.settings_dict["NAME"]),
            "MAILROOM_WORKER_SMTP_PORT": str(smtp_server.port),
        }
        if db_port:
            env["MAILROOM_WORKER_DB_PORT"] = db_port
        env.update({f"MAILROOM_WORKER_{k}": str(v) for k, v in settings.items()})
        worker = WorkerProcess(list(args), env)
        started.append(worker)
        return worker

    yield spawn
    for worker in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.proc.pid, signal.SIGKILL)
        worker.wait(10)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
