"""``mailroom unsuppress``: take addresses off the suppression list."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from mailroom import suppression

HELP = "Take addresses off the suppression list (messages already failed stay failed)."


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("addresses", nargs="+", metavar="ADDRESS")


def run(command: BaseCommand, *, addresses: list[str], **_: Any) -> None:
    removed = suppression.unsuppress(addresses)
    command.stdout.write(f"{removed} address(es) taken off the suppression list")
