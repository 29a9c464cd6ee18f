"""PostgreSQL only: trigram indexes for the admin's search by recipient and subject.

They match the SQL Django generates for a case-insensitive ``icontains`` search
(``UPPER(col::text) LIKE UPPER('%term%')``), so the admin needs no special code. Built
CONCURRENTLY so that adding them to a large live queue does not block enqueueing. Other
databases have no trigram indexes; their search scans, as before.
"""

from django.db import migrations

CREATE = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS mailroom_message_recipients_trgm "
    "ON mailroom_message USING gin (UPPER(recipients::text) gin_trgm_ops)",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS mailroom_message_subject_trgm "
    "ON mailroom_message USING gin (UPPER(subject::text) gin_trgm_ops)",
]
DROP = [
    "DROP INDEX CONCURRENTLY IF EXISTS mailroom_message_recipients_trgm",
    "DROP INDEX CONCURRENTLY IF EXISTS mailroom_message_subject_trgm",
]


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in CREATE:
            schema_editor.execute(statement)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in DROP:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("mailroom", "0003_worker_state")]

    operations = [migrations.RunPython(create, drop)]
