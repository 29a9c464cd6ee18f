"""SQLite in a rollback journal: outcomes noted in ``outcome_log`` per message, written to the
database per batch; and the recovery of what a dead worker noted.

The writer (the ``batch.OutcomeWriter`` interface) notes each plain send in the log before
:meth:`~LoggedWriter.submit` returns, on the delivery thread: a note costs about as much as a
hand-off to a writer thread would, and the barrier then has nothing left to wait for. Any
other outcome is written to the database at once, as the batch would write it. When the batch
closes, the sends it noted are written to the database in one transaction, under the log's
write lock, and their notes dropped.

The lock is what keeps the two ways into the database from both writing one send. A batch
whose lease ran out while it still worked (a hung backend) may find some of its notes already
replayed by :func:`recover`: it writes only the sends still noted, so no attempt is recorded
twice.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from django.db import connection

from . import outcome_log, signals, sqlite_commits
from .conf import get_settings
from .models import Attempt, Message, Status
from .outcome_log import Note
from .recording import Outcome, attempt_values, is_plain_sent
from .recording_sqlite import record_sent

if TYPE_CHECKING:
    from .batch import Batch

logger = logging.getLogger(__name__)


def available() -> bool:
    """Whether this thread's connection is a SQLite file in a rollback journal, outside a
    transaction, with the log on (``SQLITE_OUTCOME_LOG``)."""
    if connection.in_atomic_block or not get_settings().sqlite_outcome_log:
        return False
    if _database_file() is None:
        return False
    connection.ensure_connection()
    return sqlite_commits.in_rollback_journal(connection.connection)


def _database_file() -> str | None:
    """This thread's SQLite database file; None for another database, one in memory, or one
    named by a URI (``file:...``), whose log file could not be named after it."""
    if connection.vendor != "sqlite" or cast(Any, connection).is_in_memory_db():
        return None
    name = str(connection.settings_dict["NAME"])
    return None if name.startswith("file:") else name


class LoggedWriter:
    """Notes plain sends in the log; writes them to the database when the batch closes."""

    def __init__(self, batch: Batch) -> None:
        self._batch = batch
        self._log = outcome_log.for_database(str(connection.settings_dict["NAME"]))
        self._noted: list[Outcome] = []
        self._unusable = False  # the log failed: the rest of the batch goes to the database

    def submit(self, outcome: Outcome) -> None:
        batch = self._batch
        if self._unusable or not is_plain_sent(outcome):
            batch.write_now([outcome])
            return
        values = attempt_values(outcome, worker=batch.worker, text_limit=batch.text_limit)
        try:
            self._log.append(batch.token, outcome.message.pk, values)
        except sqlite3.Error as exc:
            # The log is a shortcut: without it, the database takes the write itself (once a
            # message, as with the log off) until the batch ends; the next batch tries again.
            logger.warning(
                "mailroom: outcome log %s: %s; writing each outcome to the database",
                self._log.path,
                exc,
            )
            self._unusable = True
            batch.write_now([outcome])
            return
        self._noted.append(outcome)

    def tidy(self) -> None:
        """Nothing to do: every note is committed before ``submit`` returns."""

    def settle(self) -> None:
        """Nothing to wait for: every note is committed before ``submit`` returns."""

    def close(self) -> None:
        """Write the noted sends to the database and drop their notes."""
        if not self._noted:
            return
        noted, self._noted = self._noted, []
        written = False
        try:
            with self._log.settling(self._batch.token) as still_noted:
                kept = [o for o in noted if o.message.pk in still_noted]
                if len(kept) < len(noted):
                    logger.warning(
                        "mailroom: %d sent message(s) had lost their lease and were recorded "
                        "by the worker that took it back",
                        len(noted) - len(kept),
                    )
                self._batch.write_now(kept)
                written = True
        except sqlite3.Error as exc:
            logger.warning("mailroom: outcome log %s: %s", self._log.path, exc)
            if not written:
                # The log could not be read: the database takes every noted send (each
                # UPDATE fenced on the claim token, as always).
                self._batch.write_now(noted)
            # Otherwise only dropping the notes failed: recovery drops them, their messages
            # being written down already.


def recover(now: datetime) -> int:
    """Write down the sends a dead worker noted in the log, before its expired lease sends
    those messages again; drop the notes nobody needs. Returns how many messages it moved to
    ``sent``.

    A note is replayed only while its message is still ``sending`` under the note's claim and
    that claim has expired; a note whose claim is still alive belongs to a batch at work and is
    left to it; any other note was written down already (its worker died between the two
    commits) and is dropped. A note that cannot be read is reported and dropped: its message
    goes back to the queue with the other expired ones and is sent again.
    """
    name = _database_file()
    if name is None or connection.in_atomic_block or not outcome_log.exists(name):
        return 0
    log = outcome_log.for_database(name)
    try:
        replayed, moved = _replay(log, now)
    except sqlite3.Error as exc:
        # Never in the way of taking leases back: their messages are sent again instead.
        logger.error(
            "mailroom: outcome log %s cannot be read (%s); messages whose lease ran out go "
            "back to the queue and may be sent again",
            log.path,
            exc,
        )
        return 0
    # Outside the log's lock: a receiver may take its time.
    for group in replayed:
        _signal_sent(group)
    if moved:
        logger.warning(
            "mailroom: %d message(s) sent by a worker that died before writing them down were "
            "recorded from the outcome log, not sent again",
            moved,
        )
    return moved


def _replay(log: outcome_log.OutcomeLog, now: datetime) -> tuple[list[list[Note]], int]:
    """:func:`recover` under the log's lock: the groups of notes replayed, and how many
    messages they moved."""
    with log.recovering() as recovery:
        notes, unreadable = recovery.notes()
        for problem in unreadable:
            logger.error("mailroom: outcome log: unreadable note for %s; sent again", problem)
        claims = {
            pk: (token, until)
            for pk, token, until in Message.objects.filter(
                pk__in=[n.message for n in notes], status=Status.SENDING
            ).values_list("pk", "claimed_by", "claimed_until")
        }
        replay: defaultdict[str, list[Note]] = defaultdict(list)
        done = [(u.token, u.message) for u in unreadable]
        for note in notes:
            token, until = claims.get(note.message, ("", None))
            if token != note.token:
                done.append((note.token, note.message))
            elif until is not None and until < now:
                replay[note.token].append(note)
        moved = 0
        for token, group in replay.items():
            moved += record_sent(
                [n.attempt for n in group], [n.message for n in group], token=token, now=now
            )
            done.extend((token, n.message) for n in group)
        recovery.drop(done)
    return list(replay.values()), moved


def _signal_sent(notes: list[Note]) -> None:
    sent = signals.message_sent
    if not sent.receivers or not sent.has_listeners(Message):
        return
    messages = Message.objects.in_bulk([n.message for n in notes])
    for note in notes:
        message = messages.get(note.message)
        if message is not None and message.status == Status.SENT:
            attempt = Attempt(**note.attempt)
            signals.send(sent, Message, message=message, attempt=attempt)
