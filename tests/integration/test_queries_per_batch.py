"""A batch costs a constant number of database queries, whatever its size.

The engine claims a batch with a fixed number of statements and records it with one bulk
insert of attempts and one UPDATE of every message sent (see ``mailroom.recording``), so a
batch of 200 must cost what a batch of 10 costs. This is a count, not a time: it holds on any
machine, and it is what keeps the worker's throughput flat as batches grow.
"""

from __future__ import annotations

import math

import pytest
from django.core.mail import EmailMessage
from django.db import connection
from django.test.utils import CaptureQueriesContext

import mailroom
from mailroom.models import Attempt, Message, Status
from mailroom.worker import Engine, RunStats

pytestmark = pytest.mark.django_db

SMALL, LARGE = 10, 200


@pytest.fixture(autouse=True)
def _queueing(queue_to_smtp):
    return queue_to_smtp


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


def attempt_insert_statements(size: int) -> int:
    """How many INSERTs Django needs to bulk-create ``size`` attempts on this database.

    SQLite allows at most 999 parameters per statement (Django's limit), so ``bulk_create``
    splits a batch's attempts into INSERTs of ``999 // fields`` rows each; PostgreSQL takes any
    number of rows in one INSERT. The split is Django's, not the engine's: it adds one
    statement per few dozen messages, not one per message.
    """
    fields = [f for f in Attempt._meta.concrete_fields if not f.primary_key]
    per_insert = connection.ops.bulk_batch_size(fields, [Attempt()] * size) or size
    return math.ceil(size / per_insert)


def test_a_batch_costs_the_same_queries_whatever_its_size(smtp_server) -> None:
    """10 messages and 200 messages: the same statements, bar SQLite's split of big INSERTs."""
    small, large = queries_for_one_batch(SMALL), queries_for_one_batch(LARGE)
    split = attempt_insert_statements(LARGE) - attempt_insert_statements(SMALL)
    assert large == small + split, (small, large, split)
    assert smtp_server.count == SMALL + LARGE


def test_a_batch_costs_a_handful_of_queries(smtp_server) -> None:
    """Claim, record and bookkeeping in a dozen statements at most (savepoints included, as
    the test runs inside a transaction): nothing is done per message."""
    assert queries_for_one_batch(SMALL) <= 12


@pytest.mark.skipif(
    connection.vendor == "sqlite", reason="SQLite splits bulk INSERTs above 999 parameters"
)
def test_on_postgresql_the_count_is_exactly_constant(smtp_server) -> None:
    assert queries_for_one_batch(SMALL) == queries_for_one_batch(LARGE)
