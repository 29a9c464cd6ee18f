"""``mailroom worker``: a long-running delivery process (see ``mailroom.runner``)."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from mailroom.runner import Worker

HELP = "Deliver continuously until stopped (SIGTERM/CONTROL-C)."


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency", type=int, default=1, help="Delivery threads, each with its own connection."
    )
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument(
        "--poll-interval", type=float, default=None, help="Seconds between looks for due mail."
    )
    parser.add_argument(
        "--stop-timeout", type=float, default=30.0, help="Seconds allowed to finish on SIGTERM."
    )
    parser.add_argument("--burst", action="store_true", help="Exit when nothing is left to send.")


def run(
    command: BaseCommand,
    *,
    concurrency: int,
    batch_size: int | None,
    poll_interval: float | None,
    stop_timeout: float,
    burst: bool,
    verbosity: int,
    **_: Any,
) -> None:
    def say(line: str) -> None:
        if verbosity >= 1:
            command.stdout.write(line)

    worker = Worker(
        concurrency=concurrency,
        burst=burst,
        batch_size=batch_size,
        poll_interval=poll_interval,
        stop_timeout=stop_timeout,
        say=say,
    )
    code = worker.run()
    if code:
        raise CommandError("mailroom worker: did not stop cleanly", returncode=code)
