"""Prometheus metrics: queue gauges read from the database, counters fed by the signals."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core.mail import EmailMessage
from django.db import DatabaseError
from django.test import RequestFactory
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import mailroom
from mailroom import metrics, operations
from mailroom.models import BackendState, Message, Status

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _queueing(queue_to_smtp):
    return queue_to_smtp


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    registry = CollectorRegistry()
    metrics.register(registry)
    yield registry
    metrics.unregister(registry)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape: (name, sorted labels) -> value, parsed from the text format."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def queue(to: str = "t@example.com", **fields) -> Message:
    row = mailroom.enqueue(EmailMessage("S", "B", "a@example.com", [to]))
    if fields:
        Message.objects.filter(pk=row.pk).update(**fields)
    return row


def test_queue_gauges_come_from_the_database_at_scrape_time(registry) -> None:
    queue(due_at=timezone.now() - timedelta(minutes=2))
    queue(due_at=timezone.now() + timedelta(hours=1))
    queue(status=Status.FAILED, last_attempt_at=timezone.now())
    BackendState.objects.create(
        alias="esp", paused_until=timezone.now() + timedelta(minutes=1), verdict="backend_down"
    )
    values = samples(registry)
    assert values[("mailroom_messages", (("status", "queued"),))] == 2
    assert values[("mailroom_messages", (("status", "failed"),))] == 1
    assert values[("mailroom_messages", (("status", "sent"),))] == 0
    assert values[("mailroom_waiting_messages", ())] == 1
    assert values[("mailroom_failed_last_hour", ())] == 1
    assert values[("mailroom_backend_paused", (("backend", "esp"),))] == 1
    assert values[("mailroom_queue_up", ())] == 1
    assert 115 <= values[("mailroom_oldest_due_age_seconds", ())] <= 180


def test_a_scrape_costs_three_queries(registry, django_assert_num_queries) -> None:
    queue()
    with django_assert_num_queries(3):
        generate_latest(registry)


def test_registering_reads_nothing_from_the_database(django_assert_num_queries) -> None:
    registry = CollectorRegistry(auto_describe=True)
    with django_assert_num_queries(0):
        metrics.register(registry)
    metrics.unregister(registry)


def test_register_is_idempotent_per_registry(registry) -> None:
    assert metrics.register(registry) is metrics.register(registry)


def test_delivery_outcomes_are_counted_by_backend_outcome_and_verdict(
    registry, smtp_server, run_send
) -> None:
    smtp_server.script.rcpt["gone@example.com"] = "550 5.1.1 No such user"
    smtp_server.script.rcpt_fail_times("grey@example.com", "451 4.7.1 Greylisted", times=1)
    queue("ok@example.com")
    queue("gone@example.com")
    queue("grey@example.com")
    run_send()
    values = samples(registry)

    def outcome(outcome: str, verdict: str) -> float:
        labels = (("backend", "default"), ("outcome", outcome), ("verdict", verdict))
        return values.get(("mailroom_outcomes_total", labels), 0)

    assert outcome("sent", "sent") == 1
    assert outcome("failed", "failed") == 1
    assert outcome("retry", "retry") == 1
    assert values[("mailroom_queued_messages_total", (("backend", "default"),))] == 3


def test_backend_pauses_are_counted(registry, smtp_server, run_send) -> None:
    smtp_server.script.greeting = "421 4.3.2 Service not available"
    queue()
    run_send()
    labels = (("backend", "default"), ("verdict", "backend_down"))
    assert samples(registry)[("mailroom_backend_pauses_total", labels)] == 1


def test_a_message_failed_without_an_attempt_is_counted_with_verdict_none(registry) -> None:
    from mailroom import suppression

    suppression.suppress(["t@example.com"], reason="r")
    queue()
    labels = (("backend", "default"), ("outcome", "failed"), ("verdict", "none"))
    assert samples(registry)[("mailroom_outcomes_total", labels)] == 1


def test_unregister_disconnects_the_counters(run_send) -> None:
    registry = CollectorRegistry()
    metrics.register(registry)
    metrics.unregister(registry)
    queue()
    assert generate_latest(registry) == b""


def test_a_database_outage_is_a_gauge_not_a_failed_scrape(registry, monkeypatch) -> None:
    def down(*args, **kwargs):
        raise DatabaseError("connection refused")

    monkeypatch.setattr(operations, "queue_status", down)
    values = samples(registry)
    assert values[("mailroom_queue_up", ())] == 0
    assert ("mailroom_oldest_due_age_seconds", ()) not in values


@pytest.fixture
def default_registry() -> Iterator[None]:
    """The view registers on prometheus-client's default registry; take it off afterwards."""
    yield
    metrics.unregister()


def test_the_view_serves_the_text_format(default_registry) -> None:
    queue()
    response = metrics.metrics_view(RequestFactory().get("/metrics"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b'mailroom_messages{status="queued"} 1.0' in response.content


def test_the_view_aggregates_processes_in_multiprocess_mode(
    default_registry, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    queue()
    response = metrics.metrics_view(RequestFactory().get("/metrics"))
    # The queue gauges are computed by the serving process itself.
    assert b'mailroom_messages{status="queued"} 1.0' in response.content
