"""The admin's search in every status, and on PostgreSQL the partial trigram indexes that serve
it (migration 0005): none written at a claim, all used by the search's query."""

from __future__ import annotations

import pytest
from django.contrib.admin.sites import site
from django.db import connection, transaction
from django.test import RequestFactory
from django.urls import reverse

from mailroom.admin import search
from mailroom.models import Message, Status
from tests.support.admin_rows import queue_message

pytestmark = pytest.mark.django_db

LIST = reverse("admin:mailroom_message_changelist")
postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="trigram indexes are PostgreSQL's"
)


def test_a_phrase_is_found_in_every_status(admin_client) -> None:
    found = {}
    for status in Status:
        row = queue_message(to=[f"needle-{status.value}@example.com"], subject=f"Hay {status}")
        Message.objects.filter(pk=row.pk).update(status=status)
        found[row.pk] = status
    queue_message(to=["other@example.com"], subject="Hay")
    response = admin_client.get(LIST, {"q": "NEEDLE"})
    assert {row.pk for row in response.context["cl"].result_list} == set(found)
    by_subject = admin_client.get(LIST, {"q": f"hay {Status.SENDING}"})
    assert {row.pk for row in by_subject.context["cl"].result_list} == {
        pk for pk, status in found.items() if status is Status.SENDING
    }


def test_every_status_is_matched_by_exactly_one_arm() -> None:
    grouped = [status for group in search.INDEXED_GROUPS for status in group]
    assert len(grouped) == len(set(grouped))
    match = search.text_match("x", "postgresql")
    # One arm per indexed group, and one for the statuses no index covers (sending).
    assert len(match.children) == len(search.INDEXED_GROUPS) + 1


@postgres_only
def test_the_trigram_indexes_are_partial_by_status() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE tablename = 'mailroom_message' AND indexname LIKE '%%trgm%%'"
        )
        indexes = dict(cursor.fetchall())
    assert set(indexes) == {
        f"mailroom_message_{column}_trgm_{group}"
        for column in ("recipients", "subject")
        for group in ("done", "queued")
    }
    for name, definition in indexes.items():
        assert "gin_trgm_ops" in definition
        if name.endswith("_done"):
            assert "WHERE ((status)::text = ANY" in definition, definition
        else:
            assert "WHERE ((status)::text = 'queued'" in definition, definition


@postgres_only
def test_the_search_query_is_served_by_the_trigram_indexes(admin_user) -> None:
    row = queue_message(to=["ada.lovelace@example.com"])
    with connection.cursor() as cursor:
        # Thousands of messages in each indexed group, so that a status alone is no way in.
        cursor.execute(
            "INSERT INTO mailroom_message (status, priority, backend, created_at, due_at, "
            "attempts, message_id, subject, from_email, recipients, refused_recipients, "
            "reason, claimed_by) "
            "SELECT CASE WHEN n %% 2 = 0 THEN 'sent' ELSE 'queued' END, priority, backend, "
            "created_at, due_at, attempts, '<' || n || '@bench>', 'Subject ' || n, from_email, "
            "jsonb_build_array('user' || n || '@example.com'), refused_recipients, "
            "reason, claimed_by FROM mailroom_message, generate_series(1, 40000) AS n "
            "WHERE id = %s",
            [row.pk],
        )
        cursor.execute("ANALYZE mailroom_message")
    request = RequestFactory().get(LIST, {"q": "lovelace"})
    request.user = admin_user
    model_admin = site._registry[Message]
    queryset, _ = model_admin.get_search_results(request, Message.objects.all(), "lovelace")
    compiled = queryset.values("pk").query.get_compiler(using="default").as_sql()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # 40,000 rows are still few
        cursor.execute("EXPLAIN " + compiled[0], compiled[1])
        plan = "\n".join(line for (line,) in cursor.fetchall())
    for name in (
        "mailroom_message_recipients_trgm_done",
        "mailroom_message_subject_trgm_done",
        "mailroom_message_recipients_trgm_queued",
        "mailroom_message_subject_trgm_queued",
    ):
        assert name in plan, plan
    assert "Seq Scan" not in plan, plan
