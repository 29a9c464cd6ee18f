"""Writing sent outcomes on PostgreSQL in a single round trip.

Outcomes are written after every message (``FLUSH_EVERY = 1``), so this write is on the send
path of every message: its cost is paid in round trips to the database far more than in
work. The general path (``recording.record``) takes five or six (BEGIN, a SET, the INSERT of
the attempts, the UPDATE of the messages, COMMIT). Here the common case, messages that were
simply sent, is one statement string:

    BEGIN; SET LOCAL synchronous_commit TO OFF;
    WITH attempt AS (INSERT INTO mailroom_attempt ... RETURNING id),
         moved AS (UPDATE mailroom_message SET status = 'sent', ... WHERE id = ANY(...)
                   AND claimed_by = <token> RETURNING id)
    SELECT (SELECT count(*) FROM attempt), (SELECT count(*) FROM moved); COMMIT

which Django's client-side binding cursor sends at once. The UPDATE is fenced on the claim
token exactly as in the general path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connection

from .models import Attempt, Message, Status


def record_sent(
    attempts: Sequence[Attempt], ids: Sequence[int], *, token: str, now: datetime
) -> int:
    """Insert ``attempts`` and mark messages ``ids`` sent. Returns how many were moved."""
    fields = [f for f in Attempt._meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    params: list[Any] = [
        field.get_db_prep_save(getattr(attempt, field.attname), connection)
        for attempt in attempts
        for field in fields
    ]
    pending = Message._meta.get_field("pending_recipients").get_db_prep_save([], connection)
    params += [Status.SENT.value, now, now, pending, list(ids), token]
    statement = (
        f"WITH attempt AS (INSERT INTO {quote(Attempt._meta.db_table)} ({columns}) "
        f"VALUES {', '.join([row] * len(attempts))} RETURNING 1), "
        f"moved AS (UPDATE {quote(Message._meta.db_table)} SET status = %s, sent_at = %s, "
        "last_attempt_at = %s, attempts = attempts + 1, pending_recipients = %s, "
        "reason = '', claimed_by = '', claimed_until = NULL "
        "WHERE id = ANY(%s) AND claimed_by = %s RETURNING 1) "
        "SELECT (SELECT count(*) FROM moved)"
    )
    # See recording._commit_without_waiting_for_disk for why the commit need not wait.
    inside = connection.in_atomic_block
    sql = (
        f"SET LOCAL synchronous_commit TO OFF; {statement}"
        if inside
        else f"BEGIN; SET LOCAL synchronous_commit TO OFF; {statement}; COMMIT"
    )
    with connection.cursor() as cursor:
        try:
            cursor.execute(sql, params)
        except Exception:
            if not inside:
                # A failed statement leaves the explicit transaction aborted: end it, or
                # every later query on this connection would fail too.
                with contextlib.suppress(Exception):
                    cursor.execute("ROLLBACK")
            raise
        return _moved(cursor)


def _moved(cursor: Any) -> int:
    while True:
        if cursor.description is not None:
            (count,) = cursor.fetchone()
            return int(count)
        if not cursor.nextset():
            return 0
