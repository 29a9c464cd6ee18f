"""``mailroom status``: counts by status, the oldest due message's age, paused backends.

With thresholds it is a monitoring check: it exits 2 (and says which threshold was crossed) when
the oldest due message is too old, too many messages failed in the last hour, or too many
backends are paused; 0 otherwise.
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from mailroom import operations
from mailroom.cli.arguments import at_least_zero, seconds

HELP = "Counts by status, oldest due age, paused backends; exit 2 past a threshold."

#: The exit status when a threshold is crossed (1 is Django's for a command that cannot run).
THRESHOLD_EXCEEDED = 2


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", dest="as_json", help="One JSON object.")
    parser.add_argument(
        "--max-oldest-due",
        type=seconds,
        metavar="SECONDS",
        help="Exit 2 when the oldest due message has waited longer than this.",
    )
    parser.add_argument(
        "--max-failed-last-hour",
        type=at_least_zero,
        metavar="N",
        help="Exit 2 when more than N messages failed in the last hour.",
    )
    parser.add_argument(
        "--max-paused",
        type=at_least_zero,
        metavar="N",
        help="Exit 2 when more than N backends are paused (0: any pause).",
    )


def run(
    command: BaseCommand,
    *,
    as_json: bool,
    max_oldest_due: float | None = None,
    max_failed_last_hour: int | None = None,
    max_paused: int | None = None,
    **_: Any,
) -> None:
    snapshot = operations.queue_status()
    exceeded = thresholds_exceeded(
        snapshot,
        max_oldest_due=max_oldest_due,
        max_failed_last_hour=max_failed_last_hour,
        max_paused=max_paused,
    )
    if as_json:
        command.stdout.write(
            json.dumps({**snapshot.as_json(), "thresholds_exceeded": exceeded}, sort_keys=True)
        )
    else:
        _print(command, snapshot)
    if exceeded:
        raise CommandError("mailroom status: " + "; ".join(exceeded), returncode=THRESHOLD_EXCEEDED)


def thresholds_exceeded(
    snapshot: operations.QueueStatus,
    *,
    max_oldest_due: float | None,
    max_failed_last_hour: int | None,
    max_paused: int | None,
) -> list[str]:
    """One sentence per threshold crossed; empty when all is well."""
    exceeded = []
    if max_oldest_due is not None and snapshot.oldest_due_age > max_oldest_due:
        exceeded.append(
            f"the oldest due message has waited {snapshot.oldest_due_age:.0f} s "
            f"(more than {max_oldest_due:g} s)"
        )
    if max_failed_last_hour is not None and snapshot.failed_last_hour > max_failed_last_hour:
        exceeded.append(
            f"{snapshot.failed_last_hour} message(s) failed in the last hour "
            f"(more than {max_failed_last_hour})"
        )
    if max_paused is not None and len(snapshot.paused) > max_paused:
        names = ", ".join(p["backend"] for p in snapshot.paused)
        exceeded.append(
            f"{len(snapshot.paused)} backend(s) paused: {names} (more than {max_paused})"
        )
    return exceeded


def _print(command: BaseCommand, snapshot: operations.QueueStatus) -> None:
    for name, count in snapshot.counts.items():
        command.stdout.write(f"{name:>10}: {count}")
    command.stdout.write(f"{'waiting':>10}: {snapshot.waiting} (queued for a later retry)")
    command.stdout.write(f"oldest due message: {snapshot.oldest_due_age:.0f} s")
    command.stdout.write(f"failed in the last hour: {snapshot.failed_last_hour}")
    for paused in snapshot.paused:
        command.stdout.write(
            command.style.WARNING(
                f"backend {paused['backend']!r} paused until {paused['paused_until']} "
                f"({paused['verdict']}): {paused['reason']}"
            )
        )
