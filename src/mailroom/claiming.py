"""How a worker takes due messages. The differences between databases are hidden here.

A claim is a lease: the rows move to ``sending`` with the claimer's token and an expiry, in
one short transaction, and no transaction or row lock is held while a mail server is being
talked to. Recording an outcome is fenced on the token (see ``recording``), so a worker whose
lease ran out cannot overwrite what another worker did since.

- PostgreSQL, MySQL, MariaDB: ``SELECT ... FOR UPDATE SKIP LOCKED``, then an UPDATE of those
  ids, in one transaction: concurrent claimers skip each other's rows instead of waiting.
- SQLite (one host): a single ``UPDATE ... WHERE id IN (SELECT ... LIMIT n)`` statement, which
  SQLite runs atomically (a compare-and-set of the whole batch), then a read of the token.

The rows come back without their ``payload``; :func:`load_payloads` reads it for the rows
that have no stored bytes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Subquery

from .models import Message, MessageQuerySet, Status


def claim(
    *,
    token: str,
    now: datetime,
    limit: int,
    lease: float,
    exclude_backends: Collection[str] = (),
    due_before: datetime | None = None,
) -> list[Message]:
    """Take up to ``limit`` due messages (priority first, then oldest due) for ``token``.

    ``due_before`` bounds what counts as due (a one-shot run takes only what was due when it
    started, so a quick retry cannot keep it busy); it defaults to ``now``.
    """
    candidates = Message.objects.due(due_before or now)
    if exclude_backends:
        candidates = candidates.exclude(backend__in=list(exclude_backends))
    claimed_until = now + timedelta(seconds=lease)
    if connection.features.has_select_for_update_skip_locked:
        return _claim_skip_locked(candidates, token, now, claimed_until, limit)
    return _claim_compare_and_set(candidates, token, now, claimed_until, limit)


def _claim_skip_locked(
    candidates: MessageQuerySet, token: str, now: datetime, claimed_until: datetime, limit: int
) -> list[Message]:
    with transaction.atomic():
        rows = list(candidates.select_for_update(skip_locked=True).defer("payload")[:limit])
        if not rows:
            return []
        # MySQL cannot UPDATE ... WHERE id IN (SELECT ... LIMIT n), hence two statements;
        # the rows stay locked between them because both are in this transaction.
        Message.objects.filter(pk__in=[m.pk for m in rows]).update(
            status=Status.SENDING, claimed_by=token, claimed_until=claimed_until
        )
    for row in rows:
        row.status = Status.SENDING
        row.claimed_by = token
        row.claimed_until = claimed_until
    return rows


def _claim_compare_and_set(
    candidates: MessageQuerySet, token: str, now: datetime, claimed_until: datetime, limit: int
) -> list[Message]:
    ids = Subquery(candidates.values("pk")[:limit])
    # The status condition is repeated in the outer UPDATE so that the statement is a true
    # compare-and-set even if another process changed a row since the subquery's plan began.
    claimed = Message.objects.filter(pk__in=ids, status=Status.QUEUED).update(
        status=Status.SENDING, claimed_by=token, claimed_until=claimed_until
    )
    if not claimed:
        return []
    return list(
        Message.objects.filter(claimed_by=token, status=Status.SENDING)
        .defer("payload")
        .order_by("priority", "due_at", "id")
    )


def load_payloads(rows: Sequence[Message]) -> None:
    """Fill in the stored message of the rows that will need it, in one query.

    Claims leave ``payload`` unread: a row rendered at enqueue goes out as its stored bytes,
    and its payload (the whole message again, attachments included, as JSON) would only cost
    time and memory. Rows without those bytes (other backends) are rebuilt from it.
    """
    wanted = {row.pk: row for row in rows if row.mime is None}
    if not wanted:
        return
    for pk, payload in Message.objects.filter(pk__in=list(wanted)).values_list("pk", "payload"):
        wanted[pk].payload = payload


def release(ids: Collection[int], *, token: str) -> int:
    """Put claimed but unattempted messages back in the queue, uncharged."""
    if not ids:
        return 0
    return Message.objects.filter(pk__in=list(ids), claimed_by=token, status=Status.SENDING).update(
        status=Status.QUEUED, claimed_by="", claimed_until=None
    )


def reclaim_expired(now: datetime) -> int:
    """Return messages whose lease ran out (their worker died) to the queue.

    Whether such a message reached its server is unknown, so it will be sent again: the
    at-least-once window. Its pinned Message-ID lets receivers drop the duplicate.
    """
    return Message.objects.lease_expired(now).update(
        status=Status.QUEUED,
        claimed_by="",
        claimed_until=None,
        reason="requeued: the worker's lease expired before it recorded an outcome",
    )
