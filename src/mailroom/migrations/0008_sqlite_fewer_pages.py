"""SQLite only: two B-tree pages fewer written by every enqueue.

A one-message enqueue in SQLite's rollback journal wrote 11 pages, each once to the journal and
once to the database, with the same four syncs as any commit: the disk's work, not Python's,
is most of the call. Two of those pages were for nothing:

- ``mailroom_messagecontent``'s key was a ``bigint`` primary key. Only a column typed exactly
  ``INTEGER`` is SQLite's rowid, so the rows were kept by a rowid of their own and the key in a
  unique index beside them. The key becomes :class:`~mailroom.models.ContentKey`, an
  ``integer`` column on SQLite: Django rebuilds the table (its rows copied), and the index is
  gone. Elsewhere the column keeps its type and nothing is done.
- ``mailroom_lease`` (status, claimed_until) took an entry for every message, queued or done,
  though only a message being sent has a lease. On SQLite it becomes partial,
  ``WHERE status = 'sending'``, which the reclaim's ``status = 'sending' AND claimed_until <
  now`` implies (SQLite matches a bound parameter against the condition since 3.20). Counts and
  filters by status are served by ``mailroom_claim``, which is whole on SQLite and leads with
  status. PostgreSQL keeps it whole (it serves those there: 0006 made the claim index partial),
  and MySQL/MariaDB have no partial indexes.

Django's migration state still knows the lease index as whole, as it knows 0006's claim index:
a later migration that makes Django rebuild ``mailroom_message`` on SQLite would make it whole
again, and should run :func:`lease_partial` after it. Backwards makes it whole again and the key
``bigint``.
"""

from django.db import migrations, models

import mailroom.models

LEASE = "mailroom_lease"
TABLE = "mailroom_message"
LEASE_COLUMNS = "(status, claimed_until)"
SENDING = "status = 'sending'"


class AlterFieldOnSQLite(migrations.AlterField):
    """AlterField whose change is to the schema on SQLite only: on PostgreSQL the column's type
    is the same, and MySQL would drop and add the foreign key again, checking every row."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "sqlite":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "sqlite":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


def _replace_lease(schema_editor, where):
    quote = schema_editor.quote_name
    schema_editor.execute(f"DROP INDEX IF EXISTS {quote(LEASE)}")
    schema_editor.execute(f"CREATE INDEX {quote(LEASE)} ON {quote(TABLE)} {LEASE_COLUMNS}{where}")


def lease_partial(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        _replace_lease(schema_editor, f" WHERE {SENDING}")


def lease_whole(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        _replace_lease(schema_editor, "")


class Migration(migrations.Migration):
    dependencies = [("mailroom", "0007_message_content")]

    operations = [
        AlterFieldOnSQLite(
            model_name="messagecontent",
            name="message",
            field=mailroom.models.ContentKey(
                on_delete=models.CASCADE,
                primary_key=True,
                related_name="content",
                serialize=False,
                to="mailroom.message",
            ),
        ),
        migrations.RunPython(lease_partial, lease_whole),
    ]
