"""Workers behind PgBouncer in transaction mode, the pooler many PostgreSQL deployments put
in front of the database: each transaction gets whichever server session is free, so nothing
a session keeps (a prepared statement) can be relied on from one transaction to the next.

A real PgBouncer (Debian's package; `.ci/install-pgbouncer.sh` installs it), on a port of its
own, in front of the test database, with two server sessions handed out in turn, so that a
worker's consecutive transactions really do change sessions."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.mail import EmailMessage

import mailroom
from mailroom.models import Attempt, Message, Status
from tests.process.conftest import wait_until
from tests.support.smtp_server import free_port

PGBOUNCER = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        os.environ.get("MAILROOM_TEST_DB") != "postgres", reason="runs in the PostgreSQL leg"
    ),
    pytest.mark.skipif(
        not PGBOUNCER, reason="PgBouncer is not installed (.ci/install-pgbouncer.sh)"
    ),
]


class PgBouncer:
    """PgBouncer in transaction mode on a free port, every database to 127.0.0.1:5432 as
    ``postgres`` (trust authentication, as the test server has)."""

    def __init__(self, pool_size: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="mailroom-pgbouncer-"))
        self.port = free_port()
        ini = self.dir / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            "* = host=127.0.0.1 port=5432 user=postgres\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            "auth_type = any\npool_mode = transaction\n"
            # Free sessions handed out in turn rather than the last one used first: a
            # client's consecutive transactions do change sessions, every run.
            "server_round_robin = 1\n"
            f"default_pool_size = {pool_size}\nmax_client_conn = 100\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
        )
        command = [str(PGBOUNCER), str(ini)]
        if os.geteuid() == 0:
            # PgBouncer refuses to run as root.
            shutil.chown(self.dir, "postgres")
            shutil.chown(ini, "postgres")
            command = ["runuser", "-u", "postgres", "--", *command]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"PgBouncer did not start: {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"PgBouncer did not listen: {self.log()}")

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def pgbouncer() -> Iterator[PgBouncer]:
    bouncer = PgBouncer(pool_size=2)
    yield bouncer
    bouncer.stop()


def test_a_worker_behind_a_transaction_pooler_delivers_everything_once(
    pgbouncer, spawn_worker, smtp_server
) -> None:
    # One worker (a second worker's PREPARE could land on the other session and put the
    # statement on both), with a second connection that claims the next batch while the
    # first delivers, on two server sessions handed out in turn: the session that PREPAREd
    # the outcome's statement is soon not the one a write gets.
    mailroom.enqueue_many(
        EmailMessage(f"S{i}", "B", "app@example.com", [f"u{i}@example.com"]) for i in range(300)
    )
    worker = spawn_worker("--burst", db_port=str(pgbouncer.port), BATCH_SIZE=20, BEHIND_POOLER=1)
    assert worker.wait(120) == 0, worker.output

    assert smtp_server.count == 300
    assert not smtp_server.duplicate_message_ids()
    assert Message.objects.filter(status=Status.SENT).count() == 300
    assert Attempt.objects.count() == 300
    # The write that found its statement gone from its session was written again the
    # ordinary way, and the connection stopped preparing it: once, not once per message.
    assert worker.output.count("prepared outcome statement is gone") == 1, worker.output
    assert "pipelined write failed" not in worker.output


def delivered_within(smtp_server, seconds: float) -> float | None:
    """Queue one message; how long until the sink had it, None if not within ``seconds``."""
    start = time.monotonic()
    mailroom.enqueue(EmailMessage("S", "B", "app@example.com", ["u@example.com"]))
    while time.monotonic() - start < seconds:
        if smtp_server.count:
            return time.monotonic() - start
        time.sleep(0.01)
    return None


NO_NOTIFICATIONS = "notifications do not reach this worker's LISTEN connection"


def test_a_worker_whose_listen_cannot_work_behind_the_pooler_says_so_and_polls(
    pgbouncer, spawn_worker, smtp_server
) -> None:
    # LISTEN through the pooler runs in a session that goes back to the pool: nothing fails,
    # no notification ever comes. The worker must say so, not wait a poll interval silently.
    worker = spawn_worker(db_port=str(pgbouncer.port), POLL_INTERVAL=2, BEHIND_POOLER=1)
    worker.wait_started()
    wait_until(lambda: NO_NOTIFICATIONS in worker.output, 20, "the listener's probe")
    assert "LISTEN_DATABASE" in worker.output
    assert delivered_within(smtp_server, 10) is not None  # by polling
    worker.terminate()
    assert worker.wait(30) == 0, worker.output


def test_listen_database_wakes_a_worker_behind_the_pooler_at_once(
    pgbouncer, spawn_worker, smtp_server
) -> None:
    # Deliveries through the pooler, LISTEN straight to PostgreSQL: woken by the enqueue's
    # NOTIFY, long before its 30 s poll.
    worker = spawn_worker(
        db_port=str(pgbouncer.port), POLL_INTERVAL=30, BEHIND_POOLER=1, LISTEN_DIRECT=1
    )
    worker.wait_started()
    time.sleep(1)  # past the first look at the queue and the listener's probe
    took = delivered_within(smtp_server, 10)
    assert took is not None, worker.output
    assert took < 5, worker.output
    assert NO_NOTIFICATIONS not in worker.output
    worker.terminate()
    assert worker.wait(30) == 0, worker.output
