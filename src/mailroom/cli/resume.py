"""``mailroom resume``: lift a backend's pause now."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from mailroom import operations

HELP = "Lift a backend's pause now (all when none is named)."


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("backends", nargs="*", metavar="BACKEND")


def run(command: BaseCommand, *, backends: list[str], **_: Any) -> None:
    resumed = operations.resume_backends(backends or None)
    if resumed:
        command.stdout.write(f"resumed: {', '.join(resumed)}")
    else:
        command.stdout.write("no backend was paused")
