"""``manage.py mailroom <send|status|retry|resume>``: parse arguments, call the engine.

Exit status: 0 whenever the command could run, even if messages failed (that is the queue
doing its job); non-zero only when it could not run at all (bad settings, no database).
"""

from __future__ import annotations

import json
import sys
import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from mailroom import operations
from mailroom.worker import Engine, RunStats


class Command(BaseCommand):
    help = "Deliver and inspect the mailroom email queue."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        send = sub.add_parser("send", help="Send every due message, then exit (for cron).")
        send.add_argument("--batch-size", type=int, default=None)

        status = sub.add_parser("status", help="Counts by status, oldest due age, paused backends.")
        status.add_argument("--json", action="store_true", help="Print one JSON object.")

        retry = sub.add_parser("retry", help="Make waiting or failed messages due now.")
        retry.add_argument("--deferred", action="store_true", help="Messages waiting for a retry.")
        retry.add_argument("--failed", action="store_true", help="Failed messages, fresh budget.")
        retry.add_argument("--id", type=int, action="append", dest="ids", help="One message.")

        resume = sub.add_parser("resume", help="Lift a backend's pause now (all when none named).")
        resume.add_argument("backends", nargs="*", metavar="BACKEND")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            getattr(self, f"_{action}")(**options)
        except DatabaseError as exc:
            raise CommandError(f"mailroom {action}: the database cannot be used: {exc}") from exc

    def _send(self, *, batch_size: int | None, verbosity: int, **_: Any) -> None:
        progress = self._progress_printer(verbosity)
        started = time.perf_counter()
        stats = Engine(batch_size=batch_size, on_batch=progress).send_due()
        elapsed = time.perf_counter() - started
        if verbosity >= 1:
            rate = stats.sent / elapsed if elapsed > 0 else 0.0
            summary = (
                f"mailroom send: {stats.claimed} taken, {stats.sent} sent, "
                f"{stats.retrying} to retry later, {stats.failed} failed, "
                f"{stats.requeued} held back by a paused backend "
                f"in {elapsed:.2f} s ({rate:.0f} msg/s)"
            )
            self.stdout.write(summary)
            for alias in sorted(stats.paused):
                self.stdout.write(self.style.WARNING(f"backend {alias!r} is paused"))

    def _progress_printer(self, verbosity: int) -> Any:
        # Progress on a terminal only: cron mail should hold the summary line and nothing else.
        if verbosity < 1 or not sys.stderr.isatty():
            return None

        def show(stats: RunStats) -> None:
            sys.stderr.write(
                f"\r  {stats.claimed} taken, {stats.sent} sent, {stats.retrying} retry, "
                f"{stats.failed} failed"
            )
            sys.stderr.flush()

        return show

    def _status(self, *, json: bool, **_: Any) -> None:
        snapshot = operations.queue_status()
        if json:
            self.stdout.write(_dumps(snapshot.as_json()))
            return
        for name, count in snapshot.counts.items():
            self.stdout.write(f"{name:>10}: {count}")
        self.stdout.write(f"{'waiting':>10}: {snapshot.waiting} (queued for a later retry)")
        self.stdout.write(f"oldest due message: {snapshot.oldest_due_age:.0f} s")
        for paused in snapshot.paused:
            self.stdout.write(
                self.style.WARNING(
                    f"backend {paused['backend']!r} paused until {paused['paused_until']} "
                    f"({paused['verdict']}): {paused['reason']}"
                )
            )

    def _retry(self, *, deferred: bool, failed: bool, ids: list[int] | None, **_: Any) -> None:
        if not (deferred or failed or ids):
            raise CommandError("mailroom retry: say what to retry: --deferred, --failed or --id N")
        if ids and not (deferred or failed):
            deferred = failed = True
        if deferred:
            count = operations.retry_deferred(ids=ids)
            self.stdout.write(f"{count} waiting message(s) made due now")
        if failed:
            count = operations.retry_failed(ids=ids)
            self.stdout.write(f"{count} failed message(s) put back in the queue")

    def _resume(self, *, backends: list[str], **_: Any) -> None:
        resumed = operations.resume_backends(backends or None)
        if resumed:
            self.stdout.write(f"resumed: {', '.join(resumed)}")
        else:
            self.stdout.write("no backend was paused")


def _dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True)
