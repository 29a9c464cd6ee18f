"""SQLite after migration 0008: the content table keyed by its rowid (no separate unique index)
and the lease index partial on ``status = 'sending'``; the statements that needed those indexes
still use one, with their values bound as mailroom binds them; and back and forth through the
migration with real rows."""

from __future__ import annotations

import pytest
from django.core.mail import EmailMessage
from django.core.management import call_command
from django.db import connection
from django.db.models import Count
from django.utils import timezone

import mailroom
from mailroom.models import Message, MessageContent

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's own pages and indexes"),
]

CONTENT = MessageContent._meta.db_table


def content_indexes() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"PRAGMA index_list('{CONTENT}')")
        return [row[1] for row in cursor.fetchall()]


def lease_sql() -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = %s", ["mailroom_lease"]
        )
        (sql,) = cursor.fetchone()
    return str(sql)


def key_is_rowid(pk: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT rowid = message_id FROM {CONTENT} WHERE message_id = %s", [pk])
        (same,) = cursor.fetchone()
    return bool(same)


def test_the_content_key_is_the_rowid_and_the_lease_index_is_partial() -> None:
    row = mailroom.enqueue(EmailMessage("S", "B", "a@example.com", ["r@example.com"]))
    assert content_indexes() == []
    assert key_is_rowid(row.pk)
    assert lease_sql().endswith("WHERE status = 'sending'")


def test_the_reclaim_and_the_status_counts_still_use_an_index() -> None:
    # QuerySet.explain binds the values as the query runs them: status = ? must still match
    # the partial index's condition (SQLite re-plans with the bound value).
    reclaim = Message.objects.lease_expired(timezone.now()).explain()
    assert "mailroom_lease" in reclaim, reclaim
    counts = Message.objects.values("status").annotate(n=Count("id")).order_by().explain()
    assert "COVERING INDEX mailroom_claim" in counts, counts
    sending = Message.objects.filter(status="sending").explain()
    assert "INDEX" in sending, sending


def test_the_content_and_its_rows_survive_the_migration_back_and_forth() -> None:
    rows = mailroom.enqueue_many(
        [
            EmailMessage("One", "B", "a@example.com", ["r@example.com"]),
            EmailMessage("Two", "Ünïcode ✓", "a@example.com", ["s@example.com"]),
        ]
    )
    Message.objects.filter(pk=rows[0].pk).update(status="sending", claimed_until=timezone.now())
    before = dict(MessageContent.objects.values_list("pk", "payload"))
    mimes = dict(MessageContent.objects.values_list("pk", "mime"))
    try:
        call_command("migrate", "mailroom", "0007", verbosity=0)
        assert len(content_indexes()) == 1  # the key's unique index is back
        assert "WHERE" not in lease_sql()
        assert dict(MessageContent.objects.values_list("pk", "payload")) == before
    finally:
        call_command("migrate", "mailroom", verbosity=0)
    assert content_indexes() == []
    assert lease_sql().endswith("WHERE status = 'sending'")
    assert dict(MessageContent.objects.values_list("pk", "payload")) == before
    assert dict(MessageContent.objects.values_list("pk", "mime")) == mimes
    assert all(key_is_rowid(row.pk) for row in rows)
    assert list(Message.objects.lease_expired(timezone.now()).values_list("pk", flat=True)) == [
        rows[0].pk
    ]
