"""SQLite: a worker killed with SIGKILL mid-batch, again and again, loses nothing and sends at
most the message in flight twice, though its batch's sends were only noted in the outcome log
(``outcome_log``) when it died: whoever takes its lease back writes them down first."""

from __future__ import annotations

import random
import time

import pytest
from django.core.mail import EmailMessage
from django.db import connection, transaction

import mailroom
from mailroom.models import Attempt, Message, Status
from tests.process.conftest import wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.skipif(connection.vendor != "sqlite", reason="the outcome log is SQLite's"),
]


def test_sigkill_mid_batch_loses_nothing_and_sends_noted_messages_once(
    spawn_worker, smtp_server, capsys
) -> None:
    total, kills = 800, 6
    smtp_server.script.data_delay = 0.002
    with transaction.atomic():
        mailroom.enqueue_many(
            EmailMessage(f"S{i}", "B", "app@example.com", [f"u{i}@example.com"])
            for i in range(total)
        )
    # A short lease, so a killed worker's messages come back within the test; batches long
    # enough (about 0.2 s) that a kill falls inside one, with sends noted and not written down.
    settings = {"LEASE": 2, "POLL_INTERVAL": 0.2}
    rng = random.Random(11)
    outputs = []
    worker = spawn_worker("--batch-size", "80", **settings)
    for _ in range(kills):
        worker.wait_started()
        wait_until(lambda: smtp_server.count > 0, 30, "a delivery")
        time.sleep(rng.uniform(0.1, 0.3))
        worker.kill()
        worker.wait(10)
        outputs.append(worker.output)
        worker = spawn_worker("--batch-size", "80", **settings)
    wait_until(
        lambda: Message.objects.filter(status=Status.SENT).count() == total,
        120,
        "every message to be recorded sent",
    )
    worker.terminate()
    assert worker.wait(60) == 0, worker.output
    outputs.append(worker.output)

    delivered = set(smtp_server.message_ids())
    duplicates = smtp_server.duplicate_message_ids()
    recovered = sum(
        int(line.split("mailroom: ")[1].split()[0])
        for output in outputs
        for line in output.splitlines()
        if "recorded from the outcome log" in line
    )
    with capsys.disabled():
        print(
            f"\n  SQLite, SIGKILL x{kills}: {len(delivered)} of {total} delivered, "
            f"{sum(n - 1 for n in duplicates.values())} duplicate deliveries, "
            f"{recovered} sends recorded from the outcome log"
        )
    assert delivered == set(Message.objects.values_list("message_id", flat=True)), "none lost"
    assert sum(n - 1 for n in duplicates.values()) <= kills
    # The killed workers' noted sends were written down by the next worker, not sent again.
    assert recovered > kills
    # One attempt per message: none written twice, none missing (a message sent twice has its
    # first sending unrecorded: it died in flight).
    assert Attempt.objects.filter(verdict="sent").count() == total
