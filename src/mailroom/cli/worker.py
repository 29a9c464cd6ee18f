"""``mailroom worker``: a long-running delivery process (see ``mailroom.runner``)."""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
from argparse import ArgumentParser
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection

from mailroom import logged_writer, sqlite_commits
from mailroom.cli.arguments import at_least_one, positive_seconds, seconds
from mailroom.runner import Worker
from mailroom.supervisor import Supervisor

HELP = "Deliver continuously until stopped (SIGTERM/CONTROL-C)."

logger = logging.getLogger(__name__)


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency",
        type=at_least_one,
        default=1,
        help="Delivery threads, each with its own connection.",
    )
    parser.add_argument(
        "--processes",
        type=at_least_one,
        default=1,
        help="Worker processes under one supervisor, each with --concurrency threads "
        "(processes do not share Python's interpreter lock; Unix only).",
    )
    parser.add_argument(
        "--batch-size",
        type=at_least_one,
        default=None,
        help="Messages per claim (default: BATCH_SIZE).",
    )
    parser.add_argument(
        "--poll-interval",
        type=positive_seconds,
        default=None,
        help="Seconds between looks for due mail.",
    )
    parser.add_argument(
        "--stop-timeout", type=seconds, default=30.0, help="Seconds allowed to finish on SIGTERM."
    )
    parser.add_argument("--burst", action="store_true", help="Exit when nothing is left to send.")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="Serve this worker's Prometheus metrics (its delivery counters and the queue "
        "gauges) at http://ADDR:PORT/metrics; with --processes N, worker process k on "
        "PORT+k. Needs django-mailroom[metrics].",
    )
    parser.add_argument(
        "--metrics-addr", default="0.0.0.0", help="The address --metrics-port listens on."
    )


def run(
    command: BaseCommand,
    *,
    concurrency: int,
    processes: int,
    batch_size: int | None,
    poll_interval: float | None,
    stop_timeout: float,
    burst: bool,
    verbosity: int,
    metrics_port: int | None = None,
    metrics_addr: str = "0.0.0.0",
    **_: Any,
) -> None:
    def say(line: str) -> None:
        if verbosity >= 1:
            command.stdout.write(line)

    if processes > 1 and "fork" not in multiprocessing.get_all_start_methods():
        raise CommandError(
            "mailroom worker: --processes needs fork (Linux or another Unix); "
            "run one worker per process instead"
        )

    serve_metrics = (
        None if metrics_port is None else _metrics_server(metrics_port, metrics_addr, processes)
    )
    hint = sqlite_hint()
    if hint:
        say(f"mailroom worker: {hint}")

    def make_worker(number: int = 0, *, supervised: bool = False) -> Worker:
        if serve_metrics is not None:
            say(serve_metrics(number))
        return Worker(
            concurrency=concurrency,
            burst=burst,
            batch_size=batch_size,
            poll_interval=poll_interval,
            stop_timeout=stop_timeout,
            say=say,
            # A supervised worker takes its stop from the supervisor, which passes on the
            # terminal's CONTROL-C as SIGTERM (see mailroom.supervisor).
            stop_signals=(signal.SIGTERM,) if supervised else (signal.SIGTERM, signal.SIGINT),
        )

    runner: Worker | Supervisor = (
        make_worker()
        if processes == 1
        else Supervisor(
            processes=processes,
            make_worker=lambda number: make_worker(number, supervised=True),
            burst=burst,
            stop_timeout=stop_timeout,
            say=say,
        )
    )
    code = runner.run()
    if code:
        failure = runner.failure or "did not stop cleanly"
        raise CommandError(f"mailroom worker: {failure}", returncode=code)


def sqlite_hint() -> str | None:
    """On SQLite, what the file's journal mode means for sending: where sends are noted
    (``outcome_log``), or else ``sqlite_commits.advice``. Nothing if the database cannot be
    reached: the worker waits for it, and says so itself."""
    if connection.vendor != "sqlite":
        return None
    try:
        if logged_writer.available():
            mode = sqlite_commits.journal_mode(connection.connection)
            path = logged_writer.log_here().path
            return (
                f"SQLite's {mode} journal: each message sent is noted in {path} and written "
                "to the database once per batch (SQLITE_OUTCOME_LOG)"
            )
        connection.ensure_connection()
        return sqlite_commits.advice(connection.connection)
    except DatabaseError:
        return None


def _metrics_server(port: int, addr: str, processes: int) -> Callable[[int], str]:
    """What serves worker process ``number``'s metrics on ``port + number``, once checked here,
    before any worker starts: prometheus-client installed, and every port free."""
    if port < 1 or port + processes - 1 > 65535:
        raise CommandError(f"mailroom worker: --metrics-port {port} is not a port for each process")
    try:
        from mailroom import metrics
    except ImproperlyConfigured as exc:
        raise CommandError(f"mailroom worker: --metrics-port: {exc}") from exc
    for number in range(processes):
        try:
            with socket.create_server((addr, port + number)):
                pass
        except OSError as exc:
            raise CommandError(
                f"mailroom worker: --metrics-port: cannot listen on {addr}:{port + number}: {exc}"
            ) from exc

    def serve(number: int) -> str:
        try:
            metrics.start_http_server(port + number, addr)
        except OSError as exc:
            # Taken since the check (a restarted process whose predecessor's socket lingers):
            # delivering matters more than being counted.
            logger.error("mailroom: metrics not served on %s:%d: %s", addr, port + number, exc)
            return f"mailroom worker: metrics NOT served on {addr}:{port + number}: {exc}"
        return f"mailroom worker: metrics on http://{addr}:{port + number}/metrics"

    return serve
