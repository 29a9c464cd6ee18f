"""``manage.py mailroom <subcommand>``: parse arguments, hand over to ``mailroom.cli``.

Exit status: 0 whenever the command could run, even if messages failed (that is the queue
doing its job); non-zero only when it could not run at all (bad settings, no database).
"""

from __future__ import annotations

import importlib
from argparse import ArgumentParser
from types import ModuleType
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from mailroom.cli import MODULES, SUBCOMMANDS


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"mailroom.cli.{MODULES.get(name, name)}")


class Command(BaseCommand):
    help = "Deliver and inspect the mailroom email queue."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        for name in SUBCOMMANDS:
            module = _module(name)
            module.add_arguments(sub.add_parser(name, help=module.HELP))

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            _module(action).run(self, **options)
        except DatabaseError as exc:
            raise CommandError(f"mailroom {action}: the database cannot be used: {exc}") from exc
