"""Migration 0007 moves each message's payload and MIME bytes to mailroom_messagecontent, and
back: checked on every database with real rows, read with plain SQL on the side of the
migration where the model no longer describes the table."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.core.management import call_command
from django.db import connection

import mailroom
from mailroom.models import MessageContent

pytestmark = pytest.mark.django_db(transaction=True)


def _plain(payload: Any, mime: Any) -> tuple[Any, bytes | None]:
    """A stored payload and MIME as Python values, whatever the driver returns."""
    if isinstance(payload, str):
        payload = json.loads(payload)
    return payload, None if mime is None else bytes(mime)


def _in_messages() -> dict[int, tuple[Any, bytes | None]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, payload, mime FROM mailroom_message")
        return {pk: _plain(payload, mime) for pk, payload, mime in cursor.fetchall()}


def _in_contents() -> dict[int, tuple[Any, bytes | None]]:
    return {
        pk: _plain(payload, mime)
        for pk, payload, mime in MessageContent.objects.values_list("pk", "payload", "mime")
    }


def test_the_content_goes_back_into_the_message_rows_and_out_again() -> None:
    rows = mailroom.enqueue_many(
        [
            EmailMessage("Rendered", "B", "a@example.com", ["r@example.com"]),
            EmailMessage("Not rendered", "Ünïcode ✓", "a@example.com", ["s@example.com"]),
        ]
    )
    # The second as a message for another backend stores it: payload only.
    MessageContent.objects.filter(pk=rows[1].pk).update(mime=None)
    before = _in_contents()
    assert before[rows[0].pk][1] is not None
    assert before[rows[1].pk][1] is None
    try:
        call_command("migrate", "mailroom", "0006", verbosity=0)
        back = _in_messages()
        with connection.cursor() as cursor:
            tables = connection.introspection.table_names(cursor)
    finally:
        call_command("migrate", "mailroom", verbosity=0)
    assert back == before
    assert MessageContent._meta.db_table not in tables
    assert _in_contents() == before
    columns = {
        c.name
        for c in connection.introspection.get_table_description(
            connection.cursor(), "mailroom_message"
        )
    }
    assert not columns & {"payload", "mime"}
