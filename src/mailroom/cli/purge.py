"""``mailroom purge``: delete sent and failed messages past an age, with their attempts."""

from __future__ import annotations

from argparse import ArgumentParser, ArgumentTypeError
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from mailroom import retention
from mailroom.cli.arguments import at_least_one

HELP = "Delete sent/failed messages older than an age, with their history (never queued ones)."


def _duration(text: str) -> timedelta:
    try:
        return retention.parse_duration(text)
    except ValueError as exc:
        raise ArgumentTypeError(str(exc)) from None


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--sent-older-than",
        type=_duration,
        metavar="AGE",
        help="Sent messages sent longer ago than AGE (30d, 12h, 90m, 45s, 2w).",
    )
    parser.add_argument(
        "--failed-older-than",
        type=_duration,
        metavar="AGE",
        help="Failed and cancelled messages that ended longer ago than AGE.",
    )
    parser.add_argument(
        "--batch-size", type=at_least_one, default=1000, help="Messages per transaction."
    )
    parser.add_argument("--dry-run", action="store_true", help="Count, delete nothing.")


def run(
    command: BaseCommand,
    *,
    sent_older_than: timedelta | None,
    failed_older_than: timedelta | None,
    batch_size: int,
    dry_run: bool,
    verbosity: int,
    **_: Any,
) -> None:
    if sent_older_than is None and failed_older_than is None:
        raise CommandError(
            "mailroom purge: say what to purge: --sent-older-than AGE, --failed-older-than AGE"
        )
    # A progress line on a terminal only: a cron job's mail holds the summary and nothing else.
    show_progress = verbosity >= 1 and not dry_run and command.stderr.isatty()

    def progress(kind: str, done: retention.PurgeCount) -> None:
        command.stderr.write(f"\r  {kind}: {done.messages} message(s) deleted", ending="")
        command.stderr.flush()

    report = retention.purge(
        sent_older_than=sent_older_than,
        failed_older_than=failed_older_than,
        batch_size=batch_size,
        dry_run=dry_run,
        on_batch=progress if show_progress else None,
    )
    if show_progress and report.total.messages:
        command.stderr.write("")  # end the progress line before the summary
    if verbosity < 1:
        return
    verb = "would delete" if dry_run else "deleted"
    for kind, count in report.counts.items():
        command.stdout.write(
            f"mailroom purge: {verb} {count.messages} {kind} message(s) "
            f"and {count.attempts} attempt(s)"
        )
