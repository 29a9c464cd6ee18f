"""``mailroom worker``: a long-running delivery process (see ``mailroom.runner``)."""

from __future__ import annotations

import multiprocessing
import signal
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from mailroom.runner import Worker
from mailroom.supervisor import Supervisor

HELP = "Deliver continuously until stopped (SIGTERM/CONTROL-C)."


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency", type=int, default=1, help="Delivery threads, each with its own connection."
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="Worker processes under one supervisor, each with --concurrency threads "
        "(processes do not share Python's interpreter lock; Unix only).",
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
    processes: int,
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

    if concurrency < 1 or processes < 1:
        raise CommandError("mailroom worker: --concurrency and --processes must be at least 1")
    if processes > 1 and "fork" not in multiprocessing.get_all_start_methods():
        raise CommandError(
            "mailroom worker: --processes needs fork (Linux or another Unix); "
            "run one worker per process instead"
        )

    def make_worker(*, supervised: bool = False) -> Worker:
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

    if processes == 1:
        code = make_worker().run()
    else:
        code = Supervisor(
            processes=processes,
            make_worker=lambda: make_worker(supervised=True),
            burst=burst,
            stop_timeout=stop_timeout,
            say=say,
        ).run()
    if code:
        raise CommandError("mailroom worker: did not stop cleanly", returncode=code)
