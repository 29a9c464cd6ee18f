"""The admin's search: one phrase, as part of any recipient or of the subject, or a Message-ID.

Elsewhere the phrase is matched against the message's own columns (the subject, the recipients'
JSON text), which a search reads whole. On PostgreSQL one trigram index serves it (migration
0009): it is on the message's content, which is written once at enqueue and never updated,
rather than on the message, whose row is written again at every status change (with every
trigram of an index on it: status is indexed, so no such UPDATE is HOT). The phrase is matched
there against :data:`CONTENT_TEXT`, the subject and the To, Cc and Bcc lists as the message
was given, so a display name (``"Ada Lovelace" <ada@example.com>``) is found too.
"""

from __future__ import annotations

from django.db import connections
from django.db.models import BooleanField, F, Func, Q
from django.db.models.expressions import RawSQL

from mailroom.models import MessageContent

#: The expression the trigram index of migration 0009 is on: the same text, or the index does
#: not serve the search (a test holds the two equal).
CONTENT_TEXT = (
    "UPPER(COALESCE(payload ->> 'subject', '') || ' ' || COALESCE(payload ->> 'to', '') "
    "|| ' ' || COALESCE(payload ->> 'cc', '') || ' ' || COALESCE(payload ->> 'bcc', ''))"
)


def text_match(term: str, alias: str) -> Q:
    """Messages with ``term`` in a recipient or the subject, case-insensitively, on database
    ``alias``."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return Q(recipients__icontains=term) | Q(subject__icontains=term)
    # As Django's icontains does: LIKE's wildcards in the phrase taken literally, and both
    # sides upper-cased by PostgreSQL, so that they are folded alike.
    pattern = f"%{connection.ops.prep_for_like_query(term)}%"
    table = connection.ops.quote_name(MessageContent._meta.db_table)
    column = connection.ops.quote_name(MessageContent._meta.pk.column)
    found = RawSQL(f"SELECT {column} FROM {table} WHERE {CONTENT_TEXT} LIKE UPPER(%s)", (pattern,))
    return Q(_AnyOf(F("pk"), found))


class _AnyOf(Func):
    """``id = ANY(ARRAY(<subquery>))``, not ``id IN (<subquery>)``: ORed with the Message-ID's
    match (as the search is), an IN became a filter tried on every message (a sequential
    scan); the array is made once and looked up through the primary key, a way in that the
    planner ORs with the Message-ID's index."""

    arg_joiner = " = ANY(ARRAY"
    template = "%(expressions)s)"
    output_field = BooleanField()
