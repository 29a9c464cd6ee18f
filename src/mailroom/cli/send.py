"""``mailroom send``: send every due message, then exit (for cron)."""

from __future__ import annotations

import time
from argparse import ArgumentParser
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand

from mailroom.cli.arguments import at_least_one
from mailroom.worker import Engine, RunStats

HELP = "Send every due message, then exit (for cron)."


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--batch-size",
        type=at_least_one,
        default=None,
        help="Messages per claim (default: BATCH_SIZE).",
    )


def run(command: BaseCommand, *, batch_size: int | None, verbosity: int, **_: Any) -> None:
    progress = progress_printer(command, verbosity)
    started = time.perf_counter()
    stats = Engine(batch_size=batch_size, on_batch=progress).send_due()
    elapsed = time.perf_counter() - started
    if progress is not None and stats.batches:
        command.stderr.write("")  # end the progress line before the summary
    if verbosity >= 1:
        command.stdout.write(summary(stats, elapsed))
        for alias in sorted(stats.paused):
            command.stdout.write(command.style.WARNING(f"backend {alias!r} is paused"))


def summary(stats: RunStats, elapsed: float) -> str:
    rate = stats.sent / elapsed if elapsed > 0 else 0.0
    return (
        f"mailroom send: {stats.claimed} taken, {stats.sent} sent, "
        f"{stats.retrying} to retry later, {stats.failed} failed, "
        f"{stats.requeued} held back by a paused backend "
        f"in {elapsed:.2f} s ({rate:.0f} msg/s)"
    )


def progress_printer(command: BaseCommand, verbosity: int) -> Callable[[RunStats], None] | None:
    """A progress line on a terminal only: cron mail should hold the summary and nothing else."""
    if verbosity < 1 or not command.stderr.isatty():
        return None

    def show(stats: RunStats) -> None:
        command.stderr.write(
            f"\r  {stats.claimed} taken, {stats.sent} sent, {stats.retrying} retry, "
            f"{stats.failed} failed",
            ending="",
        )
        command.stderr.flush()

    return show
