"""mailroom's demo: queue 30 emails through Django's mail API, deliver them to a local SMTP
server that greylists, refuses and hangs up, and check that each one ends in the right state.

Run it from the repository root with ``make demo`` (or ``.venv/bin/python example/demo.py``).
It needs no network beyond 127.0.0.1 and takes a few seconds. It exits 0 when every message
ended as expected and 1 otherwise, so it doubles as a smoke test of the whole engine.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import django
from django.core.mail import EmailMessage, EmailMultiAlternatives, send_mail, send_mass_mail
from django.core.management import call_command
from django.utils import timezone

import mailroom
from mailroom.exceptions import InvalidMessage

if TYPE_CHECKING:
    from tests.support.smtp_server import ScriptedSMTPServer

    from mailroom.models import Message
    from mailroom.operations import QueueStatus

EXAMPLE_DIR = Path(__file__).resolve().parent
REPO_ROOT = EXAMPLE_DIR.parent

# The cast, named after what the SMTP server does to them.
GREYLISTED_ALONE = "mike@greylist.example"  # the only recipient of his message
GREYLISTED_IN_GROUP = "nora@greylist.example"  # one of three recipients
UNKNOWN_USER = "ghost@example.com"  # refused for good, wherever it appears
SPAM_MARK = "FREE WATCHES"  # a subject the server refuses at end of data, for good
GREYLIST_REPLY = "451 4.7.1 Greylisted, please try again later"
UNKNOWN_USER_REPLY = "550 5.1.1 No such user"
CONTENT_REPLY = "554 5.7.1 message content rejected"
DROP_AFTER = 10  # messages let through before the server hangs up, once

HIGH_PRIORITY_SUBJECT = "Password reset"
GROUP_SUBJECT = "Team offsite: the agenda"
SPAM_SUBJECT = f"Limited offer: {SPAM_MARK}"

MAX_ROUNDS = 12
# A message's retry waits at most this long in the demo; a longer wait is cut short the way an
# operator would, with retry_deferred() (``manage.py mailroom retry --deferred``).
LONGEST_NATURAL_WAIT = 3.0


@dataclass(frozen=True, kw_only=True)
class Expected:
    """How one message must end, found by its subject."""

    status: str = mailroom.SENT
    #: Charged attempts.
    attempts: int = 1
    #: Words its reason must contain.
    reason_has: tuple[str, ...] = ()


EXPECTED: dict[str, Expected] = {
    f"Welcome aboard, {GREYLISTED_ALONE.split('@')[0]}!": Expected(attempts=2),
    f"Your weekly digest, {UNKNOWN_USER.split('@')[0]}": Expected(
        status=mailroom.FAILED, reason_has=("550", "5.1.1")
    ),
    GROUP_SUBJECT: Expected(attempts=2, reason_has=("refused for good", UNKNOWN_USER, "550")),
    SPAM_SUBJECT: Expected(status=mailroom.FAILED, reason_has=("554", "5.7.1")),
}


def main() -> int:
    started = time.perf_counter()
    # example/ holds demo_project; the repository root holds the test SMTP server.
    sys.path[:0] = [p for p in (str(EXAMPLE_DIR), str(REPO_ROOT)) if p not in sys.path]
    from tests.support.smtp_server import ScriptedSMTPServer

    server = ScriptedSMTPServer()
    # Read by demo_project.settings, hence set before django.setup().
    os.environ["DEMO_SMTP_PORT"] = str(server.port)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")
    django.setup()

    phase("1. A fresh SQLite database")
    fresh_database()

    phase("2. A scripted SMTP server on 127.0.0.1")
    script_server(server)
    server.start()
    try:
        phase("3. Queue mail with Django's usual API (nothing is sent yet)")
        enqueue_everything()

        phase("4. Bad input is refused at enqueue")
        invalid_stored = refuse_bad_input()

        phase("5. Deliver: rounds of `manage.py mailroom send`")
        deliver_in_rounds()

        phase("6. Where everything ended")
        print_table()
        problems = check(server, invalid_stored)
        print_totals(server)
    finally:
        server.stop()

    print(f"\n(demo ran in {time.perf_counter() - started:.1f} s)")
    if problems:
        print("\nDEMO FAILED: the final state is not what it should be:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print("OK: every message ended as expected.")
    return 0


def phase(title: str) -> None:
    print(f"\n== {title} {'=' * max(0, 76 - len(title))}")


# -- 1 and 2: the stage ---------------------------------------------------------------------


def fresh_database() -> None:
    from django.conf import settings

    path = Path(str(settings.DATABASES["default"]["NAME"]))
    # The database with SQLite's journal, WAL and shared-memory files, and mailroom's outcome
    # log with its own.
    for base in (path.name, path.name + "-mailroom-log"):
        for suffix in ("", "-journal", "-wal", "-shm"):
            path.with_name(base + suffix).unlink(missing_ok=True)
    call_command("migrate", verbosity=0)
    print(f"  {path.relative_to(REPO_ROOT)} created and migrated")


def script_server(server: ScriptedSMTPServer) -> None:
    script = server.script
    for address in (GREYLISTED_ALONE, GREYLISTED_IN_GROUP):
        script.rcpt_fail_times(address, GREYLIST_REPLY, times=1)
    script.rcpt[UNKNOWN_USER] = UNKNOWN_USER_REPLY
    script.data_fail_times(CONTENT_REPLY, times=1_000, subject_contains=SPAM_MARK)  # every time
    script.drop_connection_after(DROP_AFTER)
    print(f"  listening on 127.0.0.1:{server.port}; it accepts mail, except that it")
    print(f"  - greylists {GREYLISTED_ALONE} and {GREYLISTED_IN_GROUP} once: {GREYLIST_REPLY}")
    print(f"  - refuses {UNKNOWN_USER} for good: {UNKNOWN_USER_REPLY}")
    print(f"  - refuses any message whose subject has {SPAM_MARK!r}: {CONTENT_REPLY}")
    print(f"  - hangs up without a reply after {DROP_AFTER} messages, once (a backend outage)")


# -- 3 and 4: enqueueing ----------------------------------------------------------------------


def enqueue_everything() -> None:
    names = ["alice", "bob", GREYLISTED_ALONE, "carol", "dave", "erin", "frank", "grace"]
    for name in names:
        address = name if "@" in name else f"{name}@example.com"
        first = address.split("@")[0]
        send_mail(
            f"Welcome aboard, {first}!",
            f"Hello {first}, your account is ready.",
            None,
            [address],
            html_message=f"<p>Hello <b>{first}</b>, your account is ready.</p>",
        )
    print(f"  send_mail() x{len(names)}: welcome messages with an HTML part")

    readers = ["heidi", "ivan", "judy", "ken", UNKNOWN_USER, "leo", "mallory", "niaj"]
    readers += ["oscar", "pat", "quinn", "rupert", "sybil", "trent", "uma"]
    datatuple = []
    for name in readers:
        address = name if "@" in name else f"{name}@example.com"
        first = address.split("@")[0]
        datatuple.append((f"Your weekly digest, {first}", "Five things...", None, [address]))
    queued = send_mass_mail(tuple(datatuple))
    print(f"  send_mass_mail(): {queued} digests in one call (one to {UNKNOWN_USER})")

    for number in range(1, 5):
        invoice = f"INV-2025-{number:04d}"
        message = EmailMultiAlternatives(
            f"Invoice {invoice}",
            f"Your invoice {invoice} is attached.",
            to=[f"billing{number}@example.com"],
        )
        message.attach_alternative(
            f"<p>Your invoice <i>{invoice}</i> is attached.</p>", "text/html"
        )
        message.attach(f"{invoice}.csv", "item,amount\nwidgets,42.00\n", "text/csv")
        message.send()
    print("  EmailMultiAlternatives.send() x4: invoices with HTML and a CSV attachment")

    EmailMessage(
        GROUP_SUBJECT,
        "See you on Friday.",
        to=["olivia@example.com", GREYLISTED_IN_GROUP],
        cc=[UNKNOWN_USER],
    ).send()
    print(f"  EmailMessage.send(): one message to three recipients ({GROUP_SUBJECT!r})")

    send_mail(SPAM_SUBJECT, "Only today!", None, ["peggy@example.com"])
    print(f"  send_mail(): {SPAM_SUBJECT!r}, which the server will refuse")

    # Queued last, sent first: the high priority jumps the queue.
    row = mailroom.enqueue(
        EmailMessage(HIGH_PRIORITY_SUBJECT, "Your code is 123456.", to=["victor@example.com"]),
        priority="high",
    )
    print(f"  mailroom.enqueue(..., priority='high'): #{row.pk} {HIGH_PRIORITY_SUBJECT!r}")

    from mailroom.models import Message

    print(f"  {Message.objects.count()} messages queued")


def refuse_bad_input() -> int:
    from mailroom.models import Message

    before = Message.objects.count()
    attempts: list[tuple[str, Callable[[], object]]] = [
        (
            "send_mail() with a newline in the subject",
            lambda: send_mail("Hi\nBcc: everyone@example.com", "...", None, ["bob@example.com"]),
        ),
        (
            "send_mail() with two addresses in one recipient string",
            lambda: send_mail("Hi", "...", None, ["alice@example.com, bob@example.com"]),
        ),
    ]
    for what, call in attempts:
        try:
            call()
        except InvalidMessage as exc:
            print(f"  {what}\n    -> InvalidMessage: {exc}")
        else:
            print(f"  {what}\n    -> was queued (it should have been refused)")
    stored = Message.objects.count() - before
    print(f"  messages stored by these calls: {stored}")
    return stored


# -- 5: delivery ------------------------------------------------------------------------------


def deliver_in_rounds() -> None:
    from mailroom import operations

    for round_number in range(1, MAX_ROUNDS + 1):
        print(f"\n-- round {round_number}")
        manage("send")
        manage("status")
        status = operations.queue_status()
        if not status.counts[mailroom.QUEUED] and not status.counts[mailroom.SENDING]:
            print("\n  nothing left in the queue")
            return
        wait_for_next_round(status)
    print(f"\n  still queued after {MAX_ROUNDS} rounds")


def manage(*args: str) -> None:
    print(f"$ manage.py mailroom {' '.join(args)}")
    # On a terminal, `send` also draws a progress line on stderr, left without a newline; it is
    # for watching long runs and would end up glued to the summary line here.
    with contextlib.redirect_stderr(io.StringIO()):
        call_command("mailroom", *args)


def wait_for_next_round(status: QueueStatus) -> None:
    from django.db.models import Min

    from mailroom import operations
    from mailroom.models import Message

    now = timezone.now()
    if status.paused:
        until = max(datetime.fromisoformat(p["paused_until"]) for p in status.paused)
        pause = max(0.0, (until - now).total_seconds())
        print(f"  (the backend is paused: waiting {pause:.1f} s for the pause to end)")
        time.sleep(pause + 0.05)
        return
    next_due = Message.objects.queued().aggregate(next_due=Min("due_at"))["next_due"]
    if next_due is None or next_due <= now:
        return
    wait = (next_due - now).total_seconds()
    if wait <= LONGEST_NATURAL_WAIT:
        print(f"  ({status.waiting} message(s) wait for a retry: the next is due in {wait:.1f} s)")
        time.sleep(wait + 0.05)
    else:
        made_due = operations.retry_deferred()
        print(f"  (retry_deferred(): {made_due} waiting message(s) made due now)")


# -- 6: the outcome ---------------------------------------------------------------------------


def cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def print_table() -> None:
    from mailroom.models import Attempt, Message

    uncharged = set(
        Attempt.objects.filter(charged=False).values_list("message_id", flat=True).distinct()
    )
    print(f"{'id':>3}  {'to':<24}  {'subject':<28}  {'status':<6}  {'charged':>7}  reason")
    print(f"{'-' * 3}  {'-' * 24}  {'-' * 28}  {'-' * 6}  {'-' * 7}  {'-' * 60}")
    for m in Message.objects.order_by("id"):
        charged = f"{m.attempts}{'*' if m.pk in uncharged else ' '}"
        print(
            f"{m.pk:>3}  {cut(', '.join(m.recipients), 24):<24}  {cut(m.subject, 28):<28}  "
            f"{m.status:<6}  {charged:>7}  {cut(m.reason, 60) or '-'}"
        )
    if uncharged:
        print(
            "  * also had an uncharged attempt: the server hung up on it (backend down), so the "
            "try\n    did not count against its budget; it was sent on the next round"
        )


def print_totals(server: ScriptedSMTPServer) -> None:
    from mailroom.models import Message

    counts = {s: Message.objects.filter(status=s).count() for s in (mailroom.SENT, mailroom.FAILED)}
    queued = Message.objects.filter(status__in=[mailroom.QUEUED, mailroom.SENDING]).count()
    # The same Message-ID may arrive twice, but only for different recipients: a message whose
    # recipients were partly deferred is retried for those recipients alone.
    repeats = []
    for message_id in server.duplicate_message_ids():
        row = Message.objects.get(message_id=message_id)
        arrivals = " then ".join(
            ", ".join(r.rcpt_tos) for r in server.messages if r.message_id == message_id
        )
        repeats.append(f"#{row.pk}'s for different recipients ({arrivals})")
    twice = (
        "no Message-ID was received twice"
        if not repeats
        else f"a Message-ID received twice only as {'; '.join(repeats)}"
    )
    print(
        f"\nTotal: {sum(counts.values()) + queued} messages: {counts[mailroom.SENT]} sent, "
        f"{counts[mailroom.FAILED]} failed, {queued} still queued. The SMTP server received "
        f"{server.count} messages ({server.recipient_count} recipients); {twice}."
    )


def check(server: ScriptedSMTPServer, invalid_stored: int) -> list[str]:
    """Everything that is not as it should be, in words; empty when all is well."""
    from mailroom.models import Attempt, Message

    problems: list[str] = []
    if invalid_stored:
        problems.append(f"{invalid_stored} invalid message(s) were stored")
    messages = list(Message.objects.order_by("id"))
    if len(messages) != 30:
        problems.append(f"{len(messages)} messages queued, not 30")
    for m in messages:
        want = EXPECTED.get(m.subject, Expected())
        if m.status != want.status:
            problems.append(f"#{m.pk} {m.subject!r} is {m.status}, not {want.status}")
        if m.attempts != want.attempts:
            problems.append(
                f"#{m.pk} {m.subject!r} has {m.attempts} charged attempts, not {want.attempts}"
            )
        missing = [w for w in want.reason_has if w not in m.reason]
        if missing:
            problems.append(f"#{m.pk} {m.subject!r}: reason {m.reason!r} lacks {missing}")
        problems += _check_received(server, m)

    drops = Attempt.objects.filter(charged=False, verdict="backend_down").count()
    if drops != 1:
        problems.append(f"{drops} uncharged backend-down attempts, not 1 (the dropped connection)")
    first = server.messages[0].subject if server.messages else None
    if first != HIGH_PRIORITY_SUBJECT:
        problems.append(f"the first message delivered was {first!r}, not {HIGH_PRIORITY_SUBJECT!r}")
    return problems


def _check_received(server: ScriptedSMTPServer, m: Message) -> list[str]:
    """The server got this message exactly once per recipient who should have it."""
    got = sorted(a.lower() for a in server.recipients_of(m.message_id))
    should = [] if m.status != mailroom.SENT else _deliverable(m.recipients)
    if got != should:
        return [f"#{m.pk} {m.subject!r}: the server received it for {got}, not {should}"]
    return []


def _deliverable(recipients: Iterable[str]) -> list[str]:
    return sorted(a.lower() for a in recipients if a.lower() != UNKNOWN_USER)


if __name__ == "__main__":
    sys.exit(main())
