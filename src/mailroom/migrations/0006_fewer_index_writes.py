"""PostgreSQL only: two indexes of mailroom_message that every sent message wrote to for nothing.

Status is indexed, so neither of a message's two UPDATEs (the claim, queued to sending, and
the outcome, sending to sent) can be HOT: each adds an entry to every index of the table.
Measured with pg_waldump on ``mailroom send`` of 3,000 messages, that was about 14 btree leaf
insertions per message. This migration removes four of them:

- The ``varchar_pattern_ops`` index (``mailroom_message_message_id_<hash>_like``) that Django
  adds on PostgreSQL beside the plain index of a ``CharField(db_index=True)``. It serves only
  ``LIKE 'prefix%'``; mailroom looks a Message-ID up by equality (the admin's search), which the
  plain index serves. Dropped.
- ``mailroom_claim`` (status, priority, due_at, id) becomes partial, ``WHERE status =
  'queued'``: it serves the claim (``status = 'queued' AND due_at <= now ORDER BY priority,
  due_at, id``), and messages being sent or done no longer add an entry to it. Counts by status
  and the other status filters are served by ``mailroom_lease`` (status, claimed_until), which
  stays whole. PostgreSQL uses a partial index only for a statement whose WHERE implies the
  index's condition when it is planned: the claim's status is in its SQL as a literal.

The new claim index is built CONCURRENTLY under another name before the old one is dropped
(CONCURRENTLY), then renamed, so that a live queue is never without a claim index and
enqueueing is not blocked; it keeps the name Django's migration state knows it by. Each step is
checked against the catalog first, so that a run interrupted half-way can be run again.
Backwards puts both indexes back as they were. MySQL/MariaDB have no partial indexes, and the
``_like`` index is PostgreSQL's own: on other databases this migration does nothing.
"""

from django.db import migrations

TABLE = "mailroom_message"
CLAIM = "mailroom_claim"
#: The name the other claim index is built under, before it takes CLAIM's name.
BUILDING = "mailroom_claim_new"
CLAIM_COLUMNS = "(status, priority, due_at, id)"
QUEUED = "status = 'queued'"
MESSAGE_ID = "message_id"

#: The varchar_pattern_ops indexes on message_id alone: Django's ``_like`` index, whatever the
#: hash in its name.
FIND_LIKE = """
    SELECT c.relname
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    JOIN pg_opclass o ON o.oid = i.indclass[0]
    WHERE i.indrelid = %s::regclass AND i.indnatts = 1 AND a.attname = %s
      AND o.opcname = 'varchar_pattern_ops'
"""
#: Whether the named index of the table is valid and whether it is partial (no row: none).
FIND_INDEX = """
    SELECT i.indisvalid, i.indpred IS NOT NULL
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE i.indrelid = %s::regclass AND c.relname = %s
"""


def _index(schema_editor, name):
    """(valid, partial) of index ``name`` on the table, or None if there is none."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(FIND_INDEX, [TABLE, name])
        row = cursor.fetchone()
    return tuple(row) if row else None


def _replace_claim_index(schema_editor, *, partial):
    """Make mailroom_claim partial (or whole again) without a moment with no claim index."""
    if _index(schema_editor, CLAIM) == (True, partial):
        return
    quote = schema_editor.quote_name
    building = _index(schema_editor, BUILDING)
    if building is not None and building != (True, partial):
        # Left by an interrupted run: invalid (CREATE INDEX CONCURRENTLY failed), or the
        # other kind (an interrupted run the other way).
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quote(BUILDING)}")
        building = None
    if building is None:
        where = f" WHERE {QUEUED}" if partial else ""
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY {quote(BUILDING)} ON {quote(TABLE)} {CLAIM_COLUMNS}{where}"
        )
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quote(CLAIM)}")
    schema_editor.execute(f"ALTER INDEX {quote(BUILDING)} RENAME TO {quote(CLAIM)}")


def _like_name(schema_editor):
    # The name Django gave it (PostgreSQL's schema editor names it so to drop it later).
    return schema_editor._create_index_name(TABLE, [MESSAGE_ID], suffix="_like")


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(FIND_LIKE, [TABLE, MESSAGE_ID])
        like = [name for (name,) in cursor.fetchall()]
    for name in like:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}")
    _replace_claim_index(schema_editor, partial=True)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    quote = schema_editor.quote_name
    _replace_claim_index(schema_editor, partial=False)
    name = _like_name(schema_editor)
    if _index(schema_editor, name) == (False, False):
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quote(name)}")
    schema_editor.execute(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {quote(name)} "
        f"ON {quote(TABLE)} ({quote(MESSAGE_ID)} varchar_pattern_ops)"
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("mailroom", "0005_search_indexes_by_status")]

    operations = [migrations.RunPython(forwards, backwards)]
