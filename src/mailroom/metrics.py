"""Prometheus metrics: what the queue holds (from the database) and what this process did.

Two kinds, because they live in different places:

- **Queue gauges** (:class:`QueueCollector`) are read from the database when Prometheus scrapes,
  in three queries: messages by status, the oldest due message's age, waiting messages, failures
  of the last hour, paused backends. Any process can serve them, and every process gives the
  same figures.
- **Counters** of delivery outcomes, pauses and queued messages are counted from mailroom's
  signals in the process where they happen. Deliveries happen in the worker, so serve its
  counters from the worker (:func:`start_http_server`) or use prometheus-client's multiprocess
  mode (``PROMETHEUS_MULTIPROC_DIR``), which :func:`metrics_view` then aggregates.

Needs the optional dependency: ``pip install django-mailroom[metrics]``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse

try:
    import prometheus_client
    from prometheus_client import REGISTRY, CollectorRegistry, Counter
    from prometheus_client.core import GaugeMetricFamily, Metric
    from prometheus_client.exposition import choose_encoder
    from prometheus_client.multiprocess import MultiProcessCollector
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImproperlyConfigured(
        "mailroom.metrics needs prometheus-client: pip install 'django-mailroom[metrics]'"
    ) from exc

from . import operations, signals
from .models import Attempt, BackendState, Message

__all__ = ["Metrics", "QueueCollector", "metrics_view", "register", "start_http_server"]

logger = logging.getLogger(__name__)


class QueueCollector:
    """Gauges computed from the database at scrape time."""

    def describe(self) -> Iterator[Metric]:
        # Registering must not query the database (the default registry describes collectors
        # as they are registered, which may be at import time): names only.
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "mailroom_queue_up", "1 when the queue's figures could be read from the database."
        )
        try:
            snapshot = operations.queue_status()
        except DatabaseError as exc:
            logger.warning("mailroom: metrics: the queue cannot be read: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        messages, oldest, waiting, failed, paused = self._families()
        for status, count in snapshot.counts.items():
            messages.add_metric([status], count)
        oldest.add_metric([], snapshot.oldest_due_age)
        waiting.add_metric([], snapshot.waiting)
        failed.add_metric([], snapshot.failed_last_hour)
        for backend in snapshot.paused:
            paused.add_metric([backend["backend"]], 1)
        yield from (messages, oldest, waiting, failed, paused)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily(
                "mailroom_messages", "Messages in mailroom's table, by status.", labels=["status"]
            ),
            GaugeMetricFamily(
                "mailroom_oldest_due_age_seconds",
                "How long the oldest due message has waited to be sent (0: none is due).",
            ),
            GaugeMetricFamily(
                "mailroom_waiting_messages", "Queued messages waiting for a retry or a send_at."
            ),
            GaugeMetricFamily(
                "mailroom_failed_last_hour", "Messages that failed in the last hour."
            ),
            GaugeMetricFamily(
                "mailroom_backend_paused",
                "1 for each delivery backend paused now.",
                labels=["backend"],
            ),
        )


class Metrics:
    """The counters of one registry, and the signal receivers that feed them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.outcomes = Counter(
            "mailroom_outcomes",
            "Delivery outcomes recorded by this process: outcome is sent, retry or failed; "
            "verdict is the attempt's (none for a message that failed without one).",
            ["backend", "outcome", "verdict"],
            registry=registry,
        )
        self.pauses = Counter(
            "mailroom_backend_pauses",
            "Backend pauses decided by this process.",
            ["backend", "verdict"],
            registry=registry,
        )
        self.queued = Counter(
            "mailroom_queued_messages",
            "Messages queued by this process.",
            ["backend"],
            registry=registry,
        )
        self.collector = QueueCollector()
        registry.register(self.collector)
        self._uid = f"mailroom.metrics.{id(self)}"
        self._receivers = (
            (signals.message_sent, Message, self._on_sent),
            (signals.retry_scheduled, Message, self._on_retry),
            (signals.message_failed, Message, self._on_failed),
            (signals.backend_paused, BackendState, self._on_paused),
            (signals.message_queued, Message, self._on_queued),
        )
        for signal, sender, receiver in self._receivers:
            signal.connect(receiver, sender=sender, weak=False, dispatch_uid=self._uid)

    def close(self) -> None:
        """Disconnect the receivers and take everything off the registry."""
        for signal, sender, _ in self._receivers:
            signal.disconnect(sender=sender, dispatch_uid=self._uid)
        for collector in (self.outcomes, self.pauses, self.queued, self.collector):
            self.registry.unregister(collector)

    def _count(self, outcome: str, message: Message, attempt: Attempt | None) -> None:
        backend = attempt.backend if attempt is not None else message.backend
        verdict = attempt.verdict if attempt is not None else "none"
        self.outcomes.labels(backend=backend, outcome=outcome, verdict=verdict).inc()

    def _on_sent(self, sender: Any, *, message: Message, attempt: Attempt, **_: Any) -> None:
        self._count("sent", message, attempt)

    def _on_retry(self, sender: Any, *, message: Message, attempt: Attempt, **_: Any) -> None:
        self._count("retry", message, attempt)

    def _on_failed(
        self, sender: Any, *, message: Message, attempt: Attempt | None = None, **_: Any
    ) -> None:
        self._count("failed", message, attempt)

    def _on_paused(self, sender: Any, *, alias: str, verdict: str, **_: Any) -> None:
        self.pauses.labels(backend=alias, verdict=verdict).inc()

    def _on_queued(self, sender: Any, *, messages: list[Message], **_: Any) -> None:
        for message in messages:
            self.queued.labels(backend=message.backend).inc()


_registered: dict[int, Metrics] = {}


def register(registry: CollectorRegistry | None = None) -> Metrics:
    """Put mailroom's metrics on ``registry`` (prometheus-client's default one if None).

    Idempotent for a registry: a second call returns the first call's :class:`Metrics`.
    """
    registry = REGISTRY if registry is None else registry
    if id(registry) not in _registered:
        _registered[id(registry)] = Metrics(registry)
    return _registered[id(registry)]


def unregister(registry: CollectorRegistry | None = None) -> None:
    registry = REGISTRY if registry is None else registry
    metrics = _registered.pop(id(registry), None)
    if metrics is not None:
        metrics.close()


def start_http_server(port: int, addr: str = "0.0.0.0") -> None:
    """Serve this process's metrics (the worker's counters) on ``addr:port``, in a thread."""
    register()
    prometheus_client.start_http_server(port, addr)


def _registry_for_scrape() -> CollectorRegistry:
    register()  # this process's receivers, so its own counters count
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Multiprocess mode: counters come from every process's files; custom collectors are
        # not shared that way, so the queue gauges are computed here, in the serving process.
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(QueueCollector())
        return registry
    return REGISTRY


def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus scrape endpoint. It checks no permission: protect it where it is routed
    (an internal-only path, the web server's access rules, or a wrapping view)."""
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(_registry_for_scrape()), content_type=content_type)
