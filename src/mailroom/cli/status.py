"""``mailroom status``: counts by status, the oldest due message's age, paused backends."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from mailroom import operations

HELP = "Counts by status, oldest due age, paused backends."


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", dest="as_json", help="One JSON object.")


def run(command: BaseCommand, *, as_json: bool, **_: Any) -> None:
    snapshot = operations.queue_status()
    if as_json:
        command.stdout.write(json.dumps(snapshot.as_json(), sort_keys=True))
        return
    for name, count in snapshot.counts.items():
        command.stdout.write(f"{name:>10}: {count}")
    command.stdout.write(f"{'waiting':>10}: {snapshot.waiting} (queued for a later retry)")
    command.stdout.write(f"oldest due message: {snapshot.oldest_due_age:.0f} s")
    for paused in snapshot.paused:
        command.stdout.write(
            command.style.WARNING(
                f"backend {paused['backend']!r} paused until {paused['paused_until']} "
                f"({paused['verdict']}): {paused['reason']}"
            )
        )
