"""``manage.py mailroom worker --processes N``: a supervisor and its worker processes, real
processes stopped with SIGTERM and SIGINT and killed with SIGKILL."""

from __future__ import annotations

import os
import re
import signal

import pytest
from django.core.mail import EmailMessage
from django.db import transaction

import mailroom
from mailroom.models import Attempt, Message, Status
from tests.process.conftest import WorkerProcess, is_running, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

#: What each worker process prints once it runs (the supervisor prints its own line first).
READY = re.compile(r"mailroom worker \S+: \d+ thread\(s\); stop with SIGTERM")


def queue(n: int, subject: str = "S{i}") -> list[Message]:
    with transaction.atomic():
        return mailroom.enqueue_many(
            EmailMessage(subject.format(i=i), "B", "app@example.com", [f"u{i}@example.com"])
            for i in range(n)
        )


def wait_ready(worker: WorkerProcess, n: int) -> list[int]:
    """Wait for ``n`` worker processes to run; return their pids."""
    wait_until(
        lambda: sum(bool(READY.search(line)) for line in worker.lines) >= n,
        30,
        f"{n} worker processes to start:\n{worker.output}",
    )
    return worker.children()


def worker_pids() -> set[str]:
    # Attempt.worker is "host:pid:nonce/thread".
    return {w.split(":")[1] for w in Attempt.objects.values_list("worker", flat=True)}


def test_processes_share_a_deep_queue_and_exit_when_it_is_drained(
    spawn_worker, smtp_server
) -> None:
    rows = queue(1500)
    worker = spawn_worker("--processes", "2", "--burst", "--batch-size", "50")
    assert worker.wait(90) == 0, worker.output
    assert Message.objects.filter(status=Status.SENT).count() == 1500
    assert sorted(smtp_server.message_ids()) == sorted(r.message_id for r in rows), "none twice"
    assert len(worker_pids()) == 2, "both worker processes delivered"
    assert not worker.children(), "no worker process outlives its supervisor"


def test_sigterm_to_the_supervisor_stops_every_process_cleanly(spawn_worker, smtp_server) -> None:
    smtp_server.script.data_delay = 0.2
    queue(40)
    worker = spawn_worker("--processes", "2", "--batch-size", "5")
    pids = wait_ready(worker, 2)
    assert len(pids) == 2
    wait_until(lambda: smtp_server.count >= 4, 30, "the first deliveries")
    worker.terminate()
    assert worker.wait(30) == 0, worker.output
    assert not any(is_running(pid) for pid in pids)
    assert not Message.objects.filter(status=Status.SENDING).exists(), "claims returned"
    sent = Message.objects.filter(status=Status.SENT).count()
    assert sent == smtp_server.count, "every delivery is recorded, none is lost"
    assert Message.objects.filter(status=Status.QUEUED, attempts=0).count() == 40 - sent


def test_one_control_c_to_the_process_group_is_one_clean_stop(spawn_worker, smtp_server) -> None:
    """A terminal's CONTROL-C signals the supervisor and its worker processes at once; taken
    as two signals each, the workers would exit at once instead of finishing."""
    smtp_server.script.data_delay = 0.2
    queue(40)
    worker = spawn_worker("--processes", "2", "--batch-size", "5")
    pids = wait_ready(worker, 2)
    wait_until(lambda: smtp_server.count >= 4, 30, "the first deliveries")
    os.killpg(worker.proc.pid, signal.SIGINT)
    assert worker.wait(30) == 0, worker.output
    assert not any(is_running(pid) for pid in pids)
    assert "exiting now" not in worker.output
    assert not Message.objects.filter(status=Status.SENDING).exists()
    assert Message.objects.filter(status=Status.SENT).count() == smtp_server.count


def test_a_killed_worker_process_is_replaced(spawn_worker, smtp_server) -> None:
    worker = spawn_worker("--processes", "2", POLL_INTERVAL=0.2)
    first, second = wait_ready(worker, 2)
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: "exited with SIGKILL" in worker.output, 30, "the supervisor to notice")
    wait_until(
        lambda: len(worker.children()) == 2 and first not in worker.children(),
        30,
        f"a new worker process:\n{worker.output}",
    )
    assert second in worker.children(), "the other worker process runs on untouched"
    rows = queue(50)
    wait_until(lambda: smtp_server.count == 50, 30, "the queue to be delivered")
    worker.terminate()
    assert worker.wait(30) == 0, worker.output
    assert sorted(smtp_server.message_ids()) == sorted(r.message_id for r in rows)


def test_worker_processes_stop_when_their_supervisor_is_killed(spawn_worker, smtp_server) -> None:
    smtp_server.script.data_delay = 0.2
    queue(40)
    worker = spawn_worker("--processes", "2", "--batch-size", "5")
    pids = wait_ready(worker, 2)
    wait_until(lambda: smtp_server.count >= 4, 30, "the first deliveries")
    worker.kill()
    worker.wait(10)
    wait_until(lambda: not any(is_running(pid) for pid in pids), 30, "the orphans to stop")
    # They stopped as on SIGTERM: what they held went back to the queue, what was sent is
    # recorded.
    assert not Message.objects.filter(status=Status.SENDING).exists()
    assert Message.objects.filter(status=Status.SENT).count() == smtp_server.count


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["--processes", "0"], "at least 1"),
        (["--concurrency", "0"], "at least 1"),
    ],
)
def test_bad_counts_are_refused_with_a_reason(args: list[str], why: str) -> None:
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match=why):
        call_command("mailroom", "worker", *args)


def test_without_fork_processes_are_refused_with_a_reason(monkeypatch) -> None:
    import multiprocessing

    from django.core.management import CommandError, call_command

    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    with pytest.raises(CommandError, match="needs fork"):
        call_command("mailroom", "worker", "--processes", "2")
