"""PostgreSQL only: the admin's search served by one trigram index on the contents, which are
never updated, instead of four on the messages, which are updated at every status change.

0005 made the trigram indexes of ``mailroom_message`` partial by status, so that a claim wrote
none of them. The outcome still did: status is indexed, so no UPDATE of a message is HOT, and
a message becoming sent (or failed, or queued again for a retry) wrote its subject's and its
recipients' trigrams into a GIN index again. Measured on ``mailroom send`` of 3,000 messages
(PostgreSQL 15): 2,860 bytes of WAL a message with those indexes, 1,920 without, and 236
against 206 microseconds of PostgreSQL's CPU; a bulk enqueue wrote 3,520 bytes a message
against 3,330 with the index below instead.

``mailroom_messagecontent`` is written once, at enqueue, and never updated (``models``). One
trigram index on its payload's subject and addresses (:data:`EXPRESSION`: the subject, then
the To, Cc and Bcc lists as JSON text, upper-cased as Django's ``icontains`` compares) takes
each message's trigrams once, whatever its status does afterwards, and serves the search in
every status (``mailroom.admin.search``, which must use the very same expression).

The index is built CONCURRENTLY before the old ones are dropped, so that a live queue is never
without a search index and enqueueing is not blocked. Backwards puts 0005's indexes back.
"""

import importlib

from django.db import migrations

INDEX = "mailroom_content_search"

#: The indexed expression; ``mailroom.admin.search.CONTENT_TEXT`` is the same text, and a test
#: holds them equal (an expression that differs by a character is not served by the index).
EXPRESSION = (
    "UPPER(COALESCE(payload ->> 'subject', '') || ' ' || COALESCE(payload ->> 'to', '') "
    "|| ' ' || COALESCE(payload ->> 'cc', '') || ' ' || COALESCE(payload ->> 'bcc', ''))"
)

CREATE = (
    f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} "
    f"ON mailroom_messagecontent USING gin (({EXPRESSION}) gin_trgm_ops)"
)
DROP = f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}"

_BY_STATUS = importlib.import_module("mailroom.migrations.0005_search_indexes_by_status")


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    # An index left invalid by an interrupted CREATE INDEX CONCURRENTLY would be skipped by
    # IF NOT EXISTS: drop it first.
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %s",
            [INDEX],
        )
        row = cursor.fetchone()
    if row and row[0]:
        schema_editor.execute(DROP)
    schema_editor.execute(CREATE)
    for statement in _BY_STATUS.DROP_PARTIAL:
        schema_editor.execute(statement)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for statement in _BY_STATUS.CREATE_PARTIAL:
        schema_editor.execute(statement)
    schema_editor.execute(DROP)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("mailroom", "0008_sqlite_fewer_pages")]

    operations = [migrations.RunPython(forwards, backwards)]
