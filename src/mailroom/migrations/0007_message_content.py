"""A message's payload and MIME bytes move to their own table, ``mailroom_messagecontent``.

A message's row is updated at every status change, and a database writes an updated row whole:
SQLite rewrote the record with its payload and MIME bytes (twice the message, attachments
included) at the claim and again at the outcome; PostgreSQL logged the image of every row
whose payload was stored inline. The content is written once, at enqueue, and only read after.

Forwards copies every row's content in one statement, then drops the two columns; backwards
adds them back (nullable first, so that the table's rows do not stop it), copies the content
back and makes the payload NOT NULL again.
"""

from django.db import migrations, models

COPY = (
    "INSERT INTO mailroom_messagecontent (message_id, payload, mime) "
    "SELECT id, payload, mime FROM mailroom_message"
)
COPY_BACK = (
    "UPDATE mailroom_message SET "
    "payload = (SELECT c.payload FROM mailroom_messagecontent c "
    "WHERE c.message_id = mailroom_message.id), "
    "mime = (SELECT c.mime FROM mailroom_messagecontent c "
    "WHERE c.message_id = mailroom_message.id)"
)


class Migration(migrations.Migration):
    dependencies = [("mailroom", "0006_fewer_index_writes")]

    operations = [
        migrations.CreateModel(
            name="MessageContent",
            fields=[
                (
                    "message",
                    models.OneToOneField(
                        on_delete=models.deletion.CASCADE,
                        primary_key=True,
                        related_name="content",
                        serialize=False,
                        to="mailroom.message",
                    ),
                ),
                ("payload", models.JSONField()),
                ("mime", models.BinaryField(blank=True, editable=False, null=True)),
            ],
        ),
        migrations.AlterField(
            model_name="message", name="payload", field=models.JSONField(null=True)
        ),
        migrations.RunSQL(COPY, COPY_BACK),
        migrations.RemoveField(model_name="message", name="payload"),
        migrations.RemoveField(model_name="message", name="mime"),
    ]
