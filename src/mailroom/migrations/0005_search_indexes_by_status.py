"""PostgreSQL only: the trigram indexes of 0004, partial by status.

One pair for messages that are done (sent, failed, cancelled), one for queued messages; none
for messages being sent. A claim (queued to sending) then writes nothing to them. Full, they
took an entry per trigram at every status change, since PostgreSQL writes every index entry of
a row again when an UPDATE changes an indexed column (status): measured, dropping them took a
quarter off a claim's time and about a seventh off PostgreSQL's CPU per message sent. The
admin's search matches each group with its condition so that these indexes serve it
(``mailroom.admin.search``).

The new indexes are built CONCURRENTLY before the old ones are dropped, so that a live queue
is never without them and enqueueing is not blocked.
"""

from django.db import migrations

DONE = "status IN ('sent', 'failed', 'cancelled')"
QUEUED = "status = 'queued'"
COLUMNS = {"recipients": "UPPER(recipients::text)", "subject": "UPPER(subject::text)"}
GROUPS = {"done": DONE, "queued": QUEUED}

CREATE_PARTIAL = [
    f"CREATE INDEX CONCURRENTLY IF NOT EXISTS mailroom_message_{column}_trgm_{group} "
    f"ON mailroom_message USING gin ({expression} gin_trgm_ops) WHERE {condition}"
    for column, expression in COLUMNS.items()
    for group, condition in GROUPS.items()
]
DROP_PARTIAL = [
    f"DROP INDEX CONCURRENTLY IF EXISTS mailroom_message_{column}_trgm_{group}"
    for column in COLUMNS
    for group in GROUPS
]
CREATE_FULL = [
    f"CREATE INDEX CONCURRENTLY IF NOT EXISTS mailroom_message_{column}_trgm "
    f"ON mailroom_message USING gin ({expression} gin_trgm_ops)"
    for column, expression in COLUMNS.items()
]
DROP_FULL = [
    f"DROP INDEX CONCURRENTLY IF EXISTS mailroom_message_{column}_trgm" for column in COLUMNS
]


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in ["CREATE EXTENSION IF NOT EXISTS pg_trgm", *CREATE_PARTIAL, *DROP_FULL]:
            schema_editor.execute(statement)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in [*CREATE_FULL, *DROP_PARTIAL]:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("mailroom", "0004_search_indexes")]

    operations = [migrations.RunPython(forwards, backwards)]
