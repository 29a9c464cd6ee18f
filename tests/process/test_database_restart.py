"""A worker started before its database is up, and one whose database restarts under it,
both recover and deliver. Uses a private PostgreSQL instance (initdb in a temporary folder),
so the machine's shared server is never restarted."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.process.conftest import ROOT, WorkerProcess, wait_until
from tests.support.smtp_server import free_port

BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("MAILROOM_TEST_DB") != "postgres", reason="runs in the PostgreSQL leg"
    ),
    pytest.mark.skipif(not BIN, reason="PostgreSQL server binaries are not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a private PostgreSQL"),
]


class PrivatePostgres:
    def __init__(self) -> None:
        self.bin = Path(BIN[-1])
        self.dir = Path(tempfile.mkdtemp(prefix="mailroom-pg-"))
        shutil.chown(self.dir, "postgres")
        self.data = self.dir / "data"
        self.port = free_port()
        self._as_postgres(self.bin / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres")

    def _as_postgres(self, *args: object) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *map(str, args)],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._as_postgres(
            self.bin / "pg_ctl",
            "-D",
            self.data,
            "-o",
            options,
            "-l",
            self.dir / "log",
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._as_postgres(self.bin / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    yield server
    server.destroy()


def django_env(pg: PrivatePostgres, smtp_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.process_settings",
        "PYTHONPATH": str(ROOT),
        "MAILROOM_TEST_DB": "postgres",
        "MAILROOM_WORKER_DB_NAME": "postgres",
        "MAILROOM_WORKER_DB_PORT": str(pg.port),
        "MAILROOM_WORKER_SMTP_PORT": str(smtp_port),
        "MAILROOM_WORKER_POLL_INTERVAL": "0.5",
    }


def django(env: dict[str, str], code: str) -> None:
    setup = "import django; django.setup()\n"
    subprocess.run([sys.executable, "-c", setup + code], env=env, cwd=ROOT, check=True)


MIGRATE = """
from django.core.management import call_command
call_command("migrate", verbosity=0)
"""

ENQUEUE = """
from django.core.mail import EmailMessage
import mailroom
mailroom.enqueue_many(
    EmailMessage("S", "B", "app@example.com", [f"{tag}{{i}}@example.com"]) for i in range(10)
)
"""


def test_worker_started_before_the_database_then_through_a_restart(
    private_postgres, smtp_server
) -> None:
    env = django_env(private_postgres, smtp_server.port)
    worker = WorkerProcess([], env)
    try:
        worker.wait_started()
        private_postgres.start()  # the worker was up first, waiting for its database
        django(env, MIGRATE)
        django(env, ENQUEUE.format(tag="first"))
        wait_until(lambda: smtp_server.count == 10, 60, "delivery once the database is up")

        private_postgres.stop()  # the database restarts under the running worker
        private_postgres.start()
        django(env, ENQUEUE.format(tag="second"))
        wait_until(lambda: smtp_server.count == 20, 60, "delivery after the restart")

        worker.signal(signal.SIGTERM)
        assert worker.wait(60) == 0, worker.output
        assert "database unavailable" in worker.output
        assert smtp_server.duplicate_message_ids() == {}
    finally:
        if worker.proc.poll() is None:
            worker.kill()


def test_a_burst_worker_rides_out_a_database_restart_within_its_patience(
    private_postgres, smtp_server
) -> None:
    env = {**django_env(private_postgres, smtp_server.port), "MAILROOM_WORKER_BURST_PATIENCE": "60"}
    private_postgres.start()
    django(env, MIGRATE)
    django(env, ENQUEUE.format(tag="queued"))
    private_postgres.stop()
    worker = WorkerProcess(["--burst"], env)
    try:
        wait_until(lambda: "database unavailable" in worker.output, 30, "the worker to wait")
        private_postgres.start()
        assert worker.wait(60) == 0, worker.output
        assert smtp_server.count == 10
        assert "gave up" not in worker.output
    finally:
        if worker.proc.poll() is None:
            worker.kill()
