"""The delivery engine: claim -> deliver -> classify -> decide -> record -> signal.

:class:`Engine` only orchestrates: it claims a batch, hands each backend's share of it to
``backend_share`` (which delivers message by message), and records the run's stats. Every
judgement is made by the pure modules (``classification``, ``retry``) and every write by
``recording`` through a :class:`Batch`. A message's fate can never stop the loop: any
exception becomes that message's outcome, and a backend fault stops only that backend's share
of the batch. The long-running process around it is ``mailroom.runner``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import random
import socket
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import cast

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils.module_loading import import_string

from . import logged_writer, outcome_log, outcome_writer, pipelined
from .backend_share import Judge, deliver_share
from .batch import Batch, OutcomeWriter
from .claim_ahead import ClaimAhead, Claimed
from .claiming import claim, reclaim_expired, release
from .classification import Rule
from .conf import get_settings
from .delivery import DeliverySession
from .loading import load_payloads
from .logged_writer import LoggedWriter
from .models import BackendState, Message
from .pipelined import PipelinedWriter
from .ratelimit import Rate
from .recording import (
    drop_recipients,
    mark_backends_healthy,
)
from .retry import Action, RetryPolicy
from .suppression import Drop, drop_suppressed

logger = logging.getLogger(__name__)


def load_rules(configured: Sequence[Callable[..., object] | str]) -> tuple[Rule, ...]:
    """The user's rules (dotted paths imported now), tried before the built-in table."""
    user = tuple(cast(Rule, import_string(r) if isinstance(r, str) else r) for r in configured)
    return (*user,)


@dataclass
class RunStats:
    """What a run did, by outcome."""

    batches: int = 0
    claimed: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    paused: set[str] = field(default_factory=set)

    @property
    def sent(self) -> int:
        return self.actions[Action.MARK_SENT.value]

    @property
    def retrying(self) -> int:
        return self.actions[Action.RETRY_LATER.value]

    @property
    def failed(self) -> int:
        return self.actions[Action.FAIL.value]

    @property
    def requeued(self) -> int:
        return self.claimed - self.sent - self.retrying - self.failed


def _clock() -> Callable[[], datetime]:
    """``timezone.now``, decided once: it is read several times per message sent, and
    ``timezone.now`` looks at ``USE_TZ`` each time."""
    if settings.USE_TZ:
        return functools.partial(datetime.now, dt_timezone.utc)
    return datetime.now


def make_worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Engine:
    def __init__(
        self,
        *,
        worker_id: str | None = None,
        batch_size: int | None = None,
        clock: Callable[[], datetime] | None = None,
        rng: Callable[[], float] = random.random,
        on_batch: Callable[[RunStats], None] | None = None,
    ) -> None:
        self.settings = get_settings()
        self.policy = RetryPolicy.from_settings(self.settings)
        self.rules = load_rules(self.settings.classifiers)
        self.rates = {
            alias: Rate.parse(conf.rate_limit)
            for alias, conf in self.settings.backends.items()
            if conf.rate_limit
        }
        self.worker_id = worker_id or make_worker_id()
        if batch_size is not None and batch_size < 1:
            # 0 was taken for the default and a negative size failed at the first claim.
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.batch_size = batch_size if batch_size is not None else self.settings.batch_size
        self.clock = clock = clock or _clock()
        self.rng = rng
        self.judge = Judge(rules=self.rules, policy=self.policy, clock=clock, rng=rng)
        self.on_batch = on_batch
        self._tokens = itertools.count(1)
        self._ahead: ClaimAhead | None = None
        self._running = False
        self._kept: dict[str, DeliverySession] = {}

    def send_due(self) -> RunStats:
        """Send everything that is due now, then return (the one-shot ``mailroom send``).

        Only what was due when the run began is taken, so a message rescheduled a second
        later by this same run waits for the next run instead of being hammered.
        """
        started = self.clock()
        try:
            reclaim_expired(started)
        except DatabaseError:
            raise
        except Exception:
            # Taking back expired leases is not what this run is for: what is due still goes.
            logger.exception("mailroom: taking back expired leases failed")
        stats = RunStats()
        with self.running():
            while self.run_batch(stats, due_before=started):
                if self.on_batch:
                    self.on_batch(stats)
        return stats

    @contextlib.contextmanager
    def running(self, *, claim_ahead: bool = True) -> Iterator[None]:
        """A run of many batches: SMTP connections are kept from one batch to the next, and
        with ``claim_ahead`` the next batch is claimed while one is delivered (``claim_ahead``).

        Claiming ahead takes a thread and a database connection of its own; not inside a
        transaction, which that connection could not see into.
        """
        if self._running:
            yield
            return
        self._running = True
        ahead = claim_ahead and not connection.in_atomic_block
        self._ahead = ClaimAhead() if ahead else None
        # The delivery thread spends its time waiting on sockets; when a reply comes in while
        # the claiming thread is building rows, it must get the GIL back within a fraction of
        # a millisecond, not the default 5 ms (for every thread of the process, only while
        # this run lasts).
        switch = sys.getswitchinterval()
        if ahead:
            sys.setswitchinterval(min(switch, 0.0005))
        try:
            yield
        finally:
            sys.setswitchinterval(switch)
            self._running = False
            outcome_log.close_thread()
            if self._ahead is not None:
                self._ahead.close()
                self._ahead = None
            for session in self._kept.values():
                session.close()
            self._kept.clear()

    def run_batch(
        self,
        stats: RunStats,
        *,
        due_before: datetime | None = None,
        stop: threading.Event | None = None,
    ) -> int:
        """Claim and deliver one batch; return how many messages were claimed.

        When ``stop`` is set, the message in flight is finished and recorded, and what was
        claimed but not started goes back to the queue untouched.
        """
        now = self.clock()
        paused, troubled = _backend_states(now)
        claimed = self._take_ahead(paused)
        if claimed is None or not claimed.rows:
            claimed = self._claim(paused, due_before, now)
        rows, token = claimed.rows, claimed.token
        if not rows:
            return 0
        stopping = stop is not None and stop.is_set()
        if self._ahead is not None and len(rows) == self.batch_size and not stopping:
            # A full batch: there may be more. Claim it while this one is delivered.
            self._ahead.start(functools.partial(self._claim, paused, due_before))
        stats.batches += 1
        stats.claimed += len(rows)
        rows = self._without_suppressed(rows, claimed.drops, token, stats)
        batch = Batch(
            token=token,
            worker=self.worker_id,
            claimed_at=claimed.at,
            lease=self.settings.lease,
            flush_every=self.settings.flush_every,
            text_limit=self.settings.error_text_limit,
            clock=self.clock,
            writer=_writer_for_this_connection(),
        )
        healthy: list[str] = []
        groups = list(_by_backend(rows).items())
        try:
            for position, (alias, group) in enumerate(groups):
                if stop is not None and stop.is_set():
                    batch.settle()
                    release([m.pk for _, g in groups[position:] for m in g], token=token)
                    break
                if self._deliver_group(alias, group, batch, stats, stop):
                    healthy.append(alias)
        except BaseException:
            with contextlib.suppress(Exception):
                batch.close()
            raise
        batch.close()
        mark_backends_healthy([a for a in healthy if a in troubled])
        for outcome in batch.written:
            stats.verdicts[outcome.classification.verdict.value] += 1
            stats.actions[outcome.decision.action.value] += 1
        return len(rows)

    def _claim(
        self, paused: frozenset[str], due_before: datetime | None, now: datetime | None = None
    ) -> Claimed:
        now = now or self.clock()
        token = f"{self.worker_id}:{next(self._tokens)}"
        rows = claim(
            token=token,
            now=now,
            limit=self.batch_size,
            lease=self.settings.lease,
            exclude_backends=paused,
            due_before=due_before,
        )
        # The messages to rebuild, and the recipients suppressed since enqueue, looked up with
        # the claim (a query each, for the whole batch), so that a claim made ahead does this
        # on its own thread too.
        load_payloads(rows)
        return Claimed(rows, token, now, drop_suppressed(rows) if rows else {})

    def _take_ahead(self, paused: frozenset[str]) -> Claimed | None:
        """The batch claimed ahead, less what belongs to a backend paused since (released)."""
        if self._ahead is None:
            return None
        claimed = self._ahead.take()
        if claimed is None:
            return None
        held = [m.pk for m in claimed.rows if m.backend in paused]
        if not held:
            return claimed
        release(held, token=claimed.token)
        rows = [m for m in claimed.rows if m.backend not in paused]
        return Claimed(rows, claimed.token, claimed.at, claimed.drops)

    def _without_suppressed(
        self, rows: list[Message], drops: dict[int, Drop], token: str, stats: RunStats
    ) -> list[Message]:
        """Take recipients suppressed since enqueue off the batch (``drops``: see _claim)."""
        if not drops:
            return rows
        kept = []
        for row in rows:
            drop = drops.get(row.pk)
            if drop is None or drop_recipients(drop, token=token):
                kept.append(row)
            else:
                stats.actions[Action.FAIL.value] += 1
        return kept

    def _deliver_group(
        self,
        alias: str,
        group: list[Message],
        batch: Batch,
        stats: RunStats,
        stop: threading.Event | None,
    ) -> bool:
        """Deliver one backend's share of the batch. Returns True if the backend was healthy.

        Within a run (``running``) an SMTP connection that ends a batch healthy is kept
        for the next one, rather than a new connection, greeting and QUIT per batch.
        """
        session = self._kept.pop(alias, None)
        if session is not None and not session.still_open():
            session.close()
            session = None
        kept = session is not None
        session = session or DeliverySession(alias)
        healthy = False
        try:
            healthy = deliver_share(
                session,
                opened=kept,
                alias=alias,
                group=group,
                batch=batch,
                stats=stats,
                stop=stop,
                judge=self.judge,
                rate=self.rates.get(alias),
            )
            return healthy
        finally:
            if healthy and self._running and session.fast_path:
                self._kept[alias] = session
            else:
                session.close()


def _backend_states(now: datetime) -> tuple[frozenset[str], frozenset[str]]:
    """(the backends paused at ``now``, those paused or with failures to clear), read afresh
    for every batch: a backend another worker paused is skipped by this worker's next batch.

    ``BackendState.objects.filter(Q(paused_until__gt=now) | Q(failures__gt=0))`` with
    ``is_paused`` as one plain query: the ORM's compiling and model instances cost three times
    the query itself (some 220 microseconds a batch).
    """
    at = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(_backend_states_sql(connection.vendor), [at, at])
        rows = cursor.fetchall()
    return frozenset(alias for alias, paused in rows if paused), frozenset(r[0] for r in rows)


@functools.cache
def _backend_states_sql(vendor: str) -> str:
    quote = connection.ops.quote_name
    column = {f.name: quote(f.column) for f in BackendState._meta.concrete_fields}
    return (
        f"SELECT {column['alias']}, {column['paused_until']} > %s "
        f"FROM {quote(BackendState._meta.db_table)} "
        f"WHERE {column['paused_until']} > %s OR {column['failures']} > 0"
    )


def _writer_for_this_connection() -> Callable[[Batch], OutcomeWriter] | None:
    """How outcomes are written while the next message goes (None: before it goes).

    On PostgreSQL with psycopg 3, on this thread, sent without waiting (``pipelined``).
    Elsewhere on a second connection, by a writer thread (``outcome_writer``): the batch's
    own, or on SQLite the one every batch of the process shares. On SQLite the delivery
    thread writes nothing while the writer commits (it settles the writer first), so the two
    never wait on SQLite's single write lock, and the commit's fsync overlaps the next
    message's SMTP exchange. Inside a transaction (a test's, say) neither: a second
    connection cannot see into it, and a write of its own could not commit on its own.
    """
    if connection.in_atomic_block:
        return None
    if pipelined.available():
        return PipelinedWriter
    if logged_writer.available():
        return LoggedWriter
    if connection.vendor == "sqlite":
        return outcome_writer.shared
    return outcome_writer.private


def _by_backend(rows: list[Message]) -> dict[str, list[Message]]:
    groups: dict[str, list[Message]] = {}
    for row in rows:
        groups.setdefault(row.backend, []).append(row)
    return groups
