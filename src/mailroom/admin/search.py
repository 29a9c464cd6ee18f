"""The admin's search: one phrase, as part of any recipient or of the subject, or a Message-ID.

On PostgreSQL trigram indexes serve the substring search (migration 0005). They are partial,
one set for messages that are done (sent, failed, cancelled) and one for queued ones, so that a
claim (queued to sending) adds nothing to them: every index entry of a row is written again
when an UPDATE cannot be HOT, and status is indexed, so full trigram indexes were written at
every claim as well as at every outcome. PostgreSQL uses a partial index only where the query
itself implies its condition, so there the phrase is matched once per such group of statuses,
each with the group's condition; messages being sent, the few a running worker holds, are
found through the status index.
"""

from __future__ import annotations

from django.db.models import Q

from mailroom.models import Status

#: The statuses of the partial trigram indexes, one index group each (see migration 0005).
INDEXED_GROUPS: tuple[tuple[Status, ...], ...] = (
    (Status.SENT, Status.FAILED, Status.CANCELLED),
    (Status.QUEUED,),
)


def text_match(term: str, vendor: str) -> Q:
    """Messages with ``term`` in a recipient or the subject, case-insensitively."""
    text = Q(recipients__icontains=term) | Q(subject__icontains=term)
    if vendor != "postgresql":
        return text
    grouped = [status for group in INDEXED_GROUPS for status in group]
    # Every status lands in exactly one arm, so the arms together are the plain match.
    rest = [status for status in Status if status not in grouped]
    match = Q()
    for group in (*INDEXED_GROUPS, tuple(rest)):
        if group:
            match |= Q(status__in=[s.value for s in group]) & text
    return match
