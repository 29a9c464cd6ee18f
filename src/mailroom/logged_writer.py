"""SQLite in a rollback journal: outcomes noted in ``outcome_log`` per message, written to the
database per batch; and the recovery of what a dead worker noted.

The writer (the ``batch.OutcomeWriter`` interface) notes each plain send in the log before
:meth:`~LoggedWriter.submit` returns, on the delivery thread: a note costs about as much as a
hand-off to a writer thread would, and the barrier then has nothing left to wait for. Any
other outcome is written to the database at once, as the batch would write it. When the batch
closes, the sends it noted are written to the database in one transaction, then their notes
are dropped and their signals sent.

The batch's write does not hold the log's lock: other threads and processes go on noting their
sends meanwhile (with the lock held, each batch's end stalled every sender on the database).
What keeps a batch and the recovery of its lease (a lease that ran out while the batch still
worked: a hung backend) from both writing one send is ``recording_sqlite.record_noted``: each
writes in one IMMEDIATE transaction and moves only the messages its claim still holds, and
records the attempt of any other only if it is not recorded yet. Recovery itself reads, replays
and drops notes under the log's lock, so that two recoveries do not replay the same notes; a
log that is only busy is waited for, never bypassed.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from django.db import DatabaseError, connection

from . import outcome_log, recording_sqlite, signals, sqlite_commits
from .batch import with_db_retry
from .columns import stored_fields
from .conf import get_settings
from .models import Attempt, Message, Status
from .outcome_log import Note
from .recording import Outcome, attempt_values, finish, is_plain_sent, signal_attempts

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


def log_here() -> outcome_log.OutcomeLog:
    """The outcome log of this thread's database (a SQLite file: see :func:`available`)."""
    name = _database_file()
    assert name is not None, "no outcome log for this database"
    return outcome_log.for_database(name)


#: Held by a batch of this process writing its noted sends to the database.
_writing = threading.Lock()


class LoggedWriter:
    """Notes plain sends in the log; writes them to the database when the batch closes."""

    def __init__(self, batch: Batch) -> None:
        self._batch = batch
        self._log = log_here()
        self._noted: list[tuple[Outcome, dict[str, Any]]] = []  # each with its attempt's values
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
        self._noted.append((outcome, values))

    def tidy(self) -> None:
        """Nothing to do: every note is committed before ``submit`` returns."""

    def settle(self) -> None:
        """Nothing to wait for: every note is committed before ``submit`` returns."""

    def close(self) -> None:
        """Write the noted sends to the database, drop their notes, then signal them."""
        if not self._noted:
            return
        noted, self._noted = self._noted, []
        batch = self._batch
        ids = [o.message.pk for o, _ in noted]
        values = [v for _, v in noted]

        def write() -> tuple[datetime, list[int]]:
            # Without the log's lock: the other threads and processes go on noting their sends
            # while this one waits for the database. record_noted writes each send once even
            # if the lease's recovery writes the same notes meanwhile. The threads of this
            # process take turns here, not at the file's lock, whose busy handler sleeps a
            # millisecond and more before it looks again; a thread waiting out an outage does
            # so outside this lock.
            with _writing:
                now = batch.clock()
                moved, _ = recording_sqlite.record_noted(values, ids, token=batch.token, now=now)
                return now, moved

        # A database error that outlasts the retries leaves the notes to the lease's recovery.
        now, moved_ids = with_db_retry(write)
        moved = set(moved_ids)
        if len(moved) < len(noted):
            logger.warning(
                "mailroom: %d sent message(s) had lost their lease: recorded by the worker that "
                "took it back, or back in the queue",
                len(noted) - len(moved),
            )
        try:
            self._log.drop(batch.token, ids)
        except sqlite3.Error as exc:  # Busy included
            # The sends are written: whoever recovers the lease finds them moved on and drops
            # the notes then.
            logger.warning(
                "mailroom: outcome log %s: %s; notes left to recovery", self._log.path, exc
            )
        outcomes = [o for o, _ in noted if o.message.pk in moved]
        made = signal_attempts(outcomes, worker=batch.worker, text_limit=batch.text_limit)
        finish(outcomes, made, len(outcomes), now=now)
        batch.written.extend(outcomes)


def recover(now: datetime) -> frozenset[int] | None:
    """Write down the sends dead workers noted in the log, before their expired leases send
    those messages again; drop the notes nobody needs. Returns the messages the caller
    (``claiming.reclaim_expired``) must leave claimed for now, or None to leave every expired
    lease for the next round.

    A note is replayed only while its message is still ``sending`` under the note's claim and
    that claim has expired; a note whose claim is still alive belongs to a batch at work and is
    left to it. Any other note's message was moved on already (its worker died between the two
    commits, or the log could not be read when its lease was taken back): its attempt is
    recorded if it is not yet, and the note dropped. A note that cannot be read, or replayed,
    is reported and dropped, and its message sent again.

    Inside a transaction (whose work the log's commits could not follow) nothing is written:
    the noted messages are held back, for a recovery outside one. A log busy beyond
    ``BUSY_TIMEOUT`` holds every expired lease back until the next round; a log that cannot be
    read at all holds nothing back (its messages are sent again: nothing better can be done).
    """
    name = _database_file()
    if name is None or not outcome_log.exists(name):
        return frozenset()
    log = outcome_log.for_database(name)
    try:
        if connection.in_atomic_block:
            return frozenset(log.noted())
        replayed, failure = _replay(log, now)
    except outcome_log.Busy as exc:
        logger.warning("mailroom: outcome log %s busy (%s); leases taken back later", log.path, exc)
        return None
    except sqlite3.Error as exc:
        logger.error(
            "mailroom: outcome log %s cannot be read (%s); messages whose lease ran out go "
            "back to the queue and may be sent again",
            log.path,
            exc,
        )
        return frozenset()
    # Outside the log's lock: a receiver may take its time.
    for group in replayed:
        _signal_sent(group)
    moved = sum(len(group) for group in replayed)
    if moved:
        logger.warning(
            "mailroom: %d message(s) sent by a worker that died before writing them down were "
            "recorded from the outcome log, not sent again",
            moved,
        )
    if failure is not None:
        raise failure  # the rest of the notes stay for the next round
    return frozenset()


def _replay(
    log: outcome_log.OutcomeLog, now: datetime
) -> tuple[list[list[Note]], DatabaseError | None]:
    """:func:`recover` under the log's lock: the groups of notes replayed (one per claim), and
    the database error that stopped it, if one did (the groups written before it still have
    their notes dropped and their signals sent)."""
    with log.recovering() as recovery:
        notes, unreadable = recovery.notes()
        expected = {f.attname for f in stored_fields(Attempt)}
        ours: list[Note] = []
        for note in notes:
            if set(note.attempt) == expected:
                ours.append(note)
            else:  # written by a version with other attempt columns
                why = "not this version's attempt"
                unreadable.append(outcome_log.Unreadable(note.token, note.message, why))
        notes = ours
        claims = {
            pk: (token, until)
            for pk, token, until in Message.objects.filter(
                pk__in=[n.message for n in notes], status=Status.SENDING
            ).values_list("pk", "claimed_by", "claimed_until")
        }
        expired: list[Note] = []
        moved_on: list[Note] = []
        for note in notes:
            token, until = claims.get(note.message, ("", None))
            if token != note.token:
                moved_on.append(note)
            elif until is not None and until < now:
                expired.append(note)
        replayed: list[list[Note]] = []  # per claim, the notes whose message this moved
        written: list[Note] = []
        late = 0
        failure: DatabaseError | None = None
        for token, group in [*_by_token(expired).items(), *_by_token(moved_on).items()]:
            try:
                # In this process's turn, as a batch's write: a recovery may run while another
                # thread's batch writes (it finds that batch's notes just written: moved on).
                with _writing:
                    moved, recorded = recording_sqlite.record_noted(
                        [n.attempt for n in group], [n.message for n in group], token=token, now=now
                    )
            except DatabaseError as exc:
                # The database's trouble, not the notes': this group's and the rest stay for
                # the next round.
                failure = exc
                break
            except Exception as exc:  # values this version cannot store
                unreadable.extend(outcome_log.Unreadable(token, n.message, str(exc)) for n in group)
                continue
            written += group
            late += recorded - len(moved)
            moved_here = set(moved)
            replayed.append([n for n in group if n.message in moved_here])
        if late:
            logger.warning(
                "mailroom: %d attempt(s) from the outcome log recorded for messages already "
                "moved on",
                late,
            )
        for problem in unreadable:
            logger.error("mailroom: outcome log: note for %s dropped; sent again", problem)
        recovery.drop(
            [(u.token, u.message) for u in unreadable] + [(n.token, n.message) for n in written]
        )
    return [group for group in replayed if group], failure


def _by_token(notes: list[Note]) -> dict[str, list[Note]]:
    groups: defaultdict[str, list[Note]] = defaultdict(list)
    for note in notes:
        groups[note.token].append(note)
    return groups


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
