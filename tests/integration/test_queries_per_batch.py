"""What a batch costs in database queries, counted (not timed: a count holds on any machine).

With outcomes written in bulk (``FLUSH_EVERY`` at least the batch size) the engine claims a
batch with a fixed number of statements and records it with one bulk insert of attempts and
one UPDATE of every message sent (see ``mailroom.recording``), so a batch of 200 costs what a
batch of 10 costs. By default (``FLUSH_EVERY = 1``) each outcome is written before the next
message is committed to its server, to keep the at-least-once window to one message: then the
cost is that same constant plus a fixed, small number of statements per message (one on
PostgreSQL), never anything that grows with the queue.
"""

from __future__ import annotations

import pytest
from django.core.mail import EmailMessage
from django.db import connection
from django.test.utils import CaptureQueriesContext

import mailroom
from mailroom.models import Message, Status
from mailroom.worker import Engine, RunStats
from tests.conftest import SMTP_BACKEND, smtp_options

pytestmark = pytest.mark.django_db

SMALL, LARGE = 10, 200


@pytest.fixture(autouse=True)
def _queueing(smtp_server, mailroom_settings):
    mailroom_settings(
        BACKENDS={"default": {"BACKEND": SMTP_BACKEND, "OPTIONS": smtp_options(smtp_server)}},
        FLUSH_EVERY=LARGE,
    )


def queries_for_one_batch(size: int) -> int:
    """Queue ``size`` messages, deliver them as one batch, return the queries that took."""
    Message.objects.all().delete()
    mailroom.enqueue_many(
        EmailMessage(f"S{i}", "Body", "app@example.com", [f"r{i}@example.com"]) for i in range(size)
    )
    with CaptureQueriesContext(connection) as queries:
        claimed = Engine(batch_size=size).run_batch(RunStats())
    assert claimed == size
    assert Message.objects.filter(status=Status.SENT).count() == size
    return len(queries)


def test_a_batch_costs_exactly_the_same_queries_whatever_its_size(smtp_server) -> None:
    """10 messages and 200 messages: the same statements (the attempts go in as one INSERT
    executed for many rows, so SQLite's limit on parameters per statement never splits it)."""
    small, large = queries_for_one_batch(SMALL), queries_for_one_batch(LARGE)
    assert large == small, (small, large)
    assert smtp_server.count == SMALL + LARGE


def test_a_batch_costs_a_handful_of_queries(smtp_server) -> None:
    """Claim, record and bookkeeping in a dozen statements at most (savepoints included, as
    the test runs inside a transaction): nothing is done per message."""
    assert queries_for_one_batch(SMALL) <= 12


def test_writing_each_outcome_costs_a_fixed_number_of_statements_per_message(
    smtp_server, mailroom_settings
) -> None:
    """The default, FLUSH_EVERY = 1: linear in the batch, with a small fixed slope."""
    mailroom_settings(
        BACKENDS={"default": {"BACKEND": SMTP_BACKEND, "OPTIONS": smtp_options(smtp_server)}}
    )
    small, large = queries_for_one_batch(SMALL), queries_for_one_batch(LARGE)
    per_message = (large - small) / (LARGE - SMALL)
    assert per_message == int(per_message), (small, large)
    # PostgreSQL: one statement (INSERT and UPDATE in one CTE). Elsewhere: the INSERT, the
    # UPDATE and the savepoint around them (a transaction, outside tests).
    assert per_message == (1 if connection.vendor == "postgresql" else 4), (small, large)
