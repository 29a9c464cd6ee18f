"""``mailroom import``: move the queued mail of django-mailer and django-post_office.

(The module cannot be called ``import``; :data:`mailroom.cli.MODULES` maps the name.)
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from mailroom import importing
from mailroom.cli.arguments import at_least_one

HELP = "Move the queued mail of django-mailer / django-post_office into mailroom."


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--from",
        dest="sources",
        action="append",
        choices=sorted(importing.SOURCES),
        help="Import from this app only (repeatable). Default: every one installed.",
    )
    parser.add_argument(
        "--batch-size", type=at_least_one, default=500, help="Rows per transaction."
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="Do it all, then roll back: counts only."
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="Leave the rows in the old queue (stop the old sender, or mail goes out twice).",
    )


def run(
    command: BaseCommand,
    *,
    sources: list[str] | None,
    batch_size: int,
    dry_run: bool,
    keep: bool,
    verbosity: int,
    **_: Any,
) -> None:
    installed = importing.installed_sources()
    if not sources:
        if not installed:
            raise CommandError(
                "mailroom import: neither django-mailer ('mailer') nor django-post_office "
                "('post_office') is in INSTALLED_APPS: keep the old app installed to import"
            )
        sources = installed
    for label in sources:
        if label not in installed:
            raise CommandError(f"mailroom import: {label!r} is not in INSTALLED_APPS")
    for label in sources:
        report = importing.IMPORTERS[label](batch_size=batch_size, dry_run=dry_run, keep=keep)
        _print(command, report, verbosity)


def _print(command: BaseCommand, report: importing.ImportReport, verbosity: int) -> None:
    if verbosity < 1:
        return
    verb = "would import" if report.dry_run else "imported"
    if report.kept:
        where = "left in place (--keep)"
    else:
        where = (
            "then removed from the old queue" if report.dry_run else "removed from the old queue"
        )
    command.stdout.write(
        f"{report.source}: {report.found} queued, {verb} {report.imported} "
        f"({where}), {len(report.skipped)} skipped"
        + (f", {report.busy} taken by the old sender meanwhile" if report.busy else "")
    )
    for skipped in report.skipped:
        command.stdout.write(
            command.style.WARNING(f"  row {skipped.source_id} not imported: {skipped.reason}")
        )
    for note in report.notes:
        command.stdout.write(f"  {note}")
