"""``mailroom retry``: make waiting messages due now, or put failed ones back in the queue."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from mailroom import operations
from mailroom.models import Message

HELP = "Make waiting or failed messages due now."


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--deferred", action="store_true", help="Messages waiting for a retry.")
    parser.add_argument("--failed", action="store_true", help="Failed messages, fresh budget.")
    parser.add_argument("--id", type=int, action="append", dest="ids", help="One message.")


def run(
    command: BaseCommand, *, deferred: bool, failed: bool, ids: list[int] | None, **_: Any
) -> None:
    if not (deferred or failed or ids):
        raise CommandError("mailroom retry: say what to retry: --deferred, --failed or --id N")
    if ids:
        # An id that names no message is a typo: said, and nothing done, rather than a
        # "0 message(s)" that reads as if that message had nothing to retry.
        found = set(Message.objects.filter(pk__in=ids).values_list("pk", flat=True))
        missing = sorted(set(ids) - found)
        if missing:
            raise CommandError(f"mailroom retry: no message with id {', '.join(map(str, missing))}")
    if ids and not (deferred or failed):
        deferred = failed = True
    if deferred:
        count = operations.retry_deferred(ids=ids)
        command.stdout.write(f"{count} waiting message(s) made due now")
    if failed:
        count = operations.retry_failed(ids=ids)
        command.stdout.write(f"{count} failed message(s) put back in the queue")
