"""``mailroom suppress``: stop sending to some addresses (the suppression list)."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from mailroom import suppression

HELP = "Put addresses on the suppression list: they are dropped from every message."


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("addresses", nargs="+", metavar="ADDRESS")
    parser.add_argument("--reason", default="suppressed by an operator", help="Recorded reason.")


def run(command: BaseCommand, *, addresses: list[str], reason: str, **_: Any) -> None:
    try:
        added = suppression.suppress(addresses, reason=reason)
    except ValueError as exc:
        raise CommandError(f"mailroom suppress: {exc}") from exc
    already = len({suppression.normalize(a) for a in addresses}) - len(added)
    command.stdout.write(f"{len(added)} address(es) suppressed: {reason}")
    if already:
        command.stdout.write(f"{already} already suppressed (reason updated)")
