"""``manage.py mailroom worker`` as a real process: delivery, wake-up, SIGTERM, SIGINT."""

from __future__ import annotations

import signal
import socket
import time
import urllib.request

import pytest
from django.core.mail import EmailMessage
from django.db import connection, transaction

import mailroom
from mailroom.models import Message, Status
from tests.process.conftest import wait_until
from tests.support.smtp_server import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def queue(n: int, subject: str = "S{i}") -> list[Message]:
    with transaction.atomic():
        return mailroom.enqueue_many(
            EmailMessage(subject.format(i=i), "B", "app@example.com", [f"u{i}@example.com"])
            for i in range(n)
        )


def test_worker_delivers_queued_mail_and_stops_cleanly_on_sigterm(
    spawn_worker, smtp_server
) -> None:
    worker = spawn_worker()
    worker.wait_started()
    rows = queue(20)
    wait_until(lambda: smtp_server.count == 20, 30, "20 deliveries")
    worker.terminate()
    assert worker.wait(30) == 0, worker.output
    assert Message.objects.filter(status=Status.SENT).count() == 20
    assert set(smtp_server.message_ids()) == {r.message_id for r in rows}


def test_sigterm_finishes_the_message_in_flight_and_returns_the_rest(
    spawn_worker, smtp_server
) -> None:
    smtp_server.script.data_delay = 0.3
    queue(30)
    worker = spawn_worker("--batch-size", "10")
    worker.wait_started()
    wait_until(lambda: smtp_server.count >= 3, 30, "the first deliveries")
    worker.terminate()
    assert worker.wait(30) == 0, worker.output
    assert not Message.objects.filter(status=Status.SENDING).exists()
    sent = Message.objects.filter(status=Status.SENT).count()
    assert sent == smtp_server.count, "every delivery is recorded, none is lost"
    assert Message.objects.filter(status=Status.QUEUED, attempts=0).count() == 30 - sent


def start_lines(spawn_worker, marker: str, **settings: object) -> list[str]:
    """Start a worker, stop it, and return the lines of its output that contain ``marker``."""
    worker = spawn_worker(**settings)
    worker.wait_started()
    worker.terminate()
    assert worker.wait(30) == 0, worker.output
    return [line for line in worker.output.splitlines() if marker in line]


def test_on_sqlite_in_a_rollback_journal_the_worker_says_so_at_its_start(spawn_worker) -> None:
    # The test database is a file in SQLite's default journal (DELETE); other databases
    # have nothing to say.
    said = start_lines(spawn_worker, "SQLite's")
    if connection.vendor == "sqlite":
        assert said
        assert said[0].startswith("mailroom worker: SQLite's delete journal: "), said
        assert said[0].endswith(
            "-mailroom-log and written to the database once per batch (SQLITE_OUTCOME_LOG)"
        ), said
    else:
        assert not said


def test_with_the_outcome_log_off_the_worker_advises_wal_on_sqlite(spawn_worker) -> None:
    said = start_lines(spawn_worker, "PRAGMA journal_mode=WAL", SQLITE_OUTCOME_LOG=False)
    if connection.vendor == "sqlite":
        assert said
        assert said[0].startswith("mailroom worker: SQLite's delete journal: "), said
    else:
        assert not said


def test_a_second_signal_exits_at_once(spawn_worker, smtp_server) -> None:
    smtp_server.script.data_delay = 20  # a message in flight that would take 20 s
    queue(1)
    worker = spawn_worker()
    worker.wait_started()
    wait_until(lambda: smtp_server.connections >= 1, 30, "the delivery to start")
    time.sleep(0.3)
    worker.signal(signal.SIGTERM)
    time.sleep(0.3)
    worker.signal(signal.SIGINT)
    code = worker.wait(10)  # well before the 20 s the message in flight needs
    assert code != 0
    smtp_server.script.data_delay = 0


def test_an_idle_worker_does_not_spin(spawn_worker) -> None:
    worker = spawn_worker(POLL_INTERVAL=1)
    worker.wait_started()
    time.sleep(3)
    worker.terminate()
    assert worker.wait(30) == 0
    # The worker's own queries are not visible here; its log must show no error loop.
    assert "error" not in worker.output.lower(), worker.output


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="LISTEN/NOTIFY is PostgreSQL's; others poll"
)
def test_on_postgresql_a_commit_wakes_an_idle_worker_without_polling(
    spawn_worker, smtp_server
) -> None:
    worker = spawn_worker(POLL_INTERVAL=600)  # polling alone would wait ten minutes
    worker.wait_started()
    time.sleep(1.0)  # let it go idle and LISTEN
    queue(1)
    wait_until(lambda: smtp_server.count == 1, 20, "the NOTIFY to wake the worker")
    worker.terminate()
    assert worker.wait(30) == 0


def test_rolled_back_mail_is_never_sent(spawn_worker, smtp_server) -> None:
    worker = spawn_worker(POLL_INTERVAL=0.2)
    worker.wait_started()

    def view() -> None:
        with transaction.atomic():
            queue(5)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        view()
    queue(1)
    wait_until(lambda: smtp_server.count == 1, 20, "the committed message")
    time.sleep(0.5)
    assert smtp_server.count == 1
    worker.terminate()
    assert worker.wait(30) == 0


@pytest.mark.parametrize("concurrency", ["1", "2"])
def test_a_burst_worker_drains_a_deep_queue_without_stalling(
    spawn_worker, smtp_server, concurrency
) -> None:
    """Delivery threads, the claim made ahead and the writes sent without waiting share one
    process and one GIL: none may hold it while waiting for the database. (A write that
    waited in libpq with the GIL held once hung the benchmark's two-thread worker on another
    thread's claim; see mailroom.pipelined._collect.)"""
    rows = queue(3000)
    worker = spawn_worker("--burst", "--concurrency", concurrency)
    assert worker.wait(60) == 0, worker.output
    assert Message.objects.filter(status=Status.SENT).count() == 3000
    assert sorted(smtp_server.message_ids()) == sorted(r.message_id for r in rows)


def _unusable_database() -> str:
    """A database name the worker's connection fails on (the server says so at connect)."""
    if connection.vendor == "sqlite":
        return "/nonexistent-mailroom-directory/queue.sqlite3"
    return "mailroom_no_such_database"


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_burst_worker_gives_up_on_a_database_it_cannot_use(spawn_worker, processes) -> None:
    """A burst is a one-shot run (cron): waiting for ever for its database would leave each
    run waiting behind the last. It waits BURST_PATIENCE, then exits 1 saying why; under a
    supervisor, a worker process that gave up is not started again."""
    worker = spawn_worker(
        "--burst", "--processes", processes, DB_NAME=_unusable_database(), BURST_PATIENCE=2
    )
    assert worker.wait(30) == 1, worker.output
    assert "database unavailable for" in worker.output  # it did wait first
    assert "mailroom worker --burst: the database has been unavailable for" in worker.output
    if processes == "1":
        assert "CommandError: mailroom worker: the database has been unavailable for" in (
            worker.output
        )
    else:
        assert "CommandError: mailroom worker: worker process(es) 0, 1 exited with an error" in (
            worker.output
        )
        assert "restarting it" not in worker.output
    assert "Traceback" not in worker.output


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def _sent(text: str) -> float:
    """The worker's count of messages sent, summed over backends and verdicts."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("mailroom_outcomes_total{") and 'outcome="sent"' in line
    )


@pytest.mark.parametrize("processes", [1, 2])
def test_each_worker_process_serves_its_own_metrics(spawn_worker, smtp_server, processes) -> None:
    port = free_port()
    while processes == 2 and not _free(port + 1):
        port = free_port()
    worker = spawn_worker(
        "--processes", str(processes), "--metrics-port", str(port), "--metrics-addr", "127.0.0.1"
    )
    wait_until(lambda: worker.output.count("/metrics") == processes, 30, "the metrics servers")
    queue(6)
    wait_until(lambda: smtp_server.count == 6, 30, "6 deliveries")
    # Counters are per process: each counts what it sent, and together they count all.
    wait_until(
        lambda: sum(_sent(_scrape(port + k)) for k in range(processes)) == 6, 10, "the counts"
    )
    text = _scrape(port)
    assert "mailroom_queue_up 1.0" in text  # the queue gauges, read from the database
    worker.terminate()
    assert worker.wait(30) == 0, worker.output


def _free(port: int) -> bool:
    try:
        with socket.create_server(("127.0.0.1", port)):
            return True
    except OSError:
        return False


def test_a_metrics_port_in_use_is_refused_before_any_worker_starts(spawn_worker) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        worker = spawn_worker("--metrics-port", str(port), "--metrics-addr", "127.0.0.1")
        assert worker.wait(30) != 0
    assert f"cannot listen on 127.0.0.1:{port}" in worker.output
    assert "stop with SIGTERM" not in worker.output
