"""Many workers on one database: every message exactly once; SIGKILL loses nothing; a rate
limit holds across processes. These run real worker processes against a real SMTP sink that
records every Message-ID."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest
from django.core.mail import EmailMessage
from django.db import connection, transaction

import mailroom
from mailroom.models import Attempt, Message, Status
from tests.process.conftest import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

skip_sqlite = pytest.mark.skipif(
    connection.vendor == "sqlite", reason="many workers on many hosts need PostgreSQL or MariaDB"
)


def queue(n: int) -> None:
    for start in range(0, n, 1000):
        with transaction.atomic():
            mailroom.enqueue_many(
                EmailMessage(f"S{i}", "B", "app@example.com", [f"u{i}@example.com"])
                for i in range(start, min(n, start + 1000))
            )


@skip_sqlite
def test_four_workers_drain_5000_messages_each_delivered_exactly_once(
    spawn_worker, smtp_server
) -> None:
    queue(5000)
    workers = [spawn_worker("--batch-size", "50") for _ in range(4)]
    wait_until(lambda: smtp_server.count >= 5000, 240, "5,000 deliveries")
    for worker in workers:
        worker.terminate()
    for worker in workers:
        assert worker.wait(60) == 0, worker.output
    assert smtp_server.count == 5000
    assert smtp_server.duplicate_message_ids() == {}
    assert Message.objects.filter(status=Status.SENT).count() == 5000
    # Every worker took a share: the claim really is concurrent, not one at a time.
    shares = Counter(w.split("/")[0] for w in Attempt.objects.values_list("worker", flat=True))
    assert len(shares) == 4, shares


@skip_sqlite
def test_sigkill_ten_times_loses_nothing_and_duplicates_at_most_one_per_kill(
    spawn_worker, smtp_server, capsys
) -> None:
    total, kills = 1500, 10
    smtp_server.script.data_delay = 0.002
    queue(total)
    # A short lease, so a killed worker's messages come back within the test.
    settings = {"LEASE": 2, "POLL_INTERVAL": 0.2}
    workers = [spawn_worker("--batch-size", "20", **settings) for _ in range(3)]
    for worker in workers:
        worker.wait_started()
    rng = random.Random(7)
    for _ in range(kills):
        time.sleep(0.4)
        victim = rng.randrange(len(workers))
        workers[victim].kill()
        workers[victim].wait(10)
        workers[victim] = spawn_worker("--batch-size", "20", **settings)
    wait_until(
        lambda: Message.objects.filter(status=Status.SENT).count() == total,
        240,
        "every message to be recorded sent",
    )
    for worker in workers:
        worker.terminate()
        assert worker.wait(60) == 0, worker.output

    delivered = set(smtp_server.message_ids())
    expected = set(Message.objects.values_list("message_id", flat=True))
    duplicates = smtp_server.duplicate_message_ids()
    with capsys.disabled():
        print(
            f"\n  SIGKILL x{kills}: {len(delivered)} of {total} delivered, "
            f"{sum(n - 1 for n in duplicates.values())} duplicate deliveries "
            f"({len(duplicates)} messages)"
        )
    assert delivered == expected, "nothing lost"
    assert not Message.objects.exclude(status=Status.SENT).exists()
    assert sum(n - 1 for n in duplicates.values()) <= kills


@skip_sqlite
def test_a_rate_limit_holds_across_three_workers(spawn_worker, smtp_server) -> None:
    rate, total = 20, 80
    queue(total)
    workers = [
        spawn_worker("--batch-size", "10", RATE_LIMIT=f"{rate}/s", POLL_INTERVAL=0.2)
        for _ in range(3)
    ]
    wait_until(lambda: smtp_server.count >= total, 60, "every delivery")
    for worker in workers:
        worker.terminate()
        assert worker.wait(60) == 0, worker.output
    times = sorted(Attempt.objects.values_list("started_at", flat=True))
    elapsed = (times[-1] - times[0]).total_seconds()
    # One second's burst is allowed, then `rate` per second: 80 messages need >= 3 s.
    assert elapsed >= (total - rate) / rate * 0.95, elapsed
    # And in no second (after the burst) were there more than `rate` sends.
    start = times[0]
    per_second = Counter(int((t - start).total_seconds()) for t in times)
    assert max(c for s, c in per_second.items() if s >= 1) <= rate + 1, per_second
