"""The admin's search in every status, and on PostgreSQL the trigram index on the contents that
serves it (migration 0009): written once at enqueue, never by a change of status."""

from __future__ import annotations

import importlib
import re

import pytest
from django.contrib.admin.sites import site
from django.core.mail import EmailMessage
from django.core.management import call_command
from django.db import connection, transaction
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

import mailroom
from mailroom.admin import search
from mailroom.models import Message, MessageContent, Status
from mailroom.worker import Engine
from tests.conftest import SMTP_BACKEND, smtp_options
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


def test_a_cc_or_bcc_address_is_found_too(admin_client) -> None:
    copied = mailroom.enqueue(
        EmailMessage("One", "B", "app@example.com", ["a@example.com"], cc=["carbon@example.com"])
    )
    hidden = mailroom.enqueue(
        EmailMessage("Two", "B", "app@example.com", ["b@example.com"], bcc=["blind@example.com"])
    )
    queue_message(to=["c@example.com"], subject="Three")
    for term, row in (("carbon", copied), ("blind@", hidden)):
        response = admin_client.get(LIST, {"q": term})
        assert [r.pk for r in response.context["cl"].result_list] == [row.pk], term


@postgres_only
def test_on_postgresql_a_display_name_is_found_too(admin_client) -> None:
    """The contents keep the addresses as they were given (the message's own column keeps the
    envelope's, which Django 6 makes the bare address)."""
    row = queue_message(to=['"Ada Lovelace" <ada@example.com>'], subject="Notes")
    other = queue_message(to=["x@example.com"], subject="Other")
    Message.objects.filter(pk=other.pk).update(status=Status.SENT)
    response = admin_client.get(LIST, {"q": "lovelace"})
    assert [r.pk for r in response.context["cl"].result_list] == [row.pk]


def test_like_wildcards_in_the_phrase_are_taken_literally(admin_client) -> None:
    literal = queue_message(to=["a@example.com"], subject="100% done")
    queue_message(to=["b@example.com"], subject="1000 done")
    response = admin_client.get(LIST, {"q": "100%"})
    assert [r.pk for r in response.context["cl"].result_list] == [literal.pk]


INDEX = "mailroom_content_search"


@postgres_only
def test_one_trigram_index_on_the_contents_and_none_on_the_messages() -> None:
    migration = importlib.import_module("mailroom.migrations.0009_search_by_content")
    assert migration.EXPRESSION == search.CONTENT_TEXT
    assert migration.INDEX == INDEX
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes "
            "WHERE tablename LIKE 'mailroom%%' AND indexdef LIKE '%%gin_trgm_ops%%'"
        )
        indexes = {name: (table, definition) for table, name, definition in cursor.fetchall()}
    assert set(indexes) == {INDEX}
    table, definition = indexes[INDEX]
    assert table == "mailroom_messagecontent"
    assert "WHERE" not in definition  # every message, whatever its status


def test_sending_and_retrying_never_write_the_contents(smtp_server, mailroom_settings) -> None:
    """What 0009 rests on: the search index is on the contents because a message's content is
    written once, at enqueue, whatever its status does afterwards (claimed, sent, queued again
    for a retry, failed), so no trigram is written twice."""
    mailroom_settings(
        BACKENDS={"default": {"BACKEND": SMTP_BACKEND, "OPTIONS": smtp_options(smtp_server)}}
    )
    smtp_server.script.rcpt["later@example.com"] = "451 4.3.0 Try again later"
    mailroom.enqueue_many(
        EmailMessage(f"S{i}", "B", "app@example.com", [to])
        for i, to in enumerate(["now@example.com", "later@example.com"])
    )
    with CaptureQueriesContext(connection) as queries:
        Engine().send_due()
    assert Message.objects.filter(status=Status.SENT).count() == 1
    assert Message.objects.filter(status=Status.QUEUED, attempts=1).count() == 1  # a retry
    table = re.escape(MessageContent._meta.db_table)
    written = re.compile(rf'\b(UPDATE|INSERT INTO|DELETE FROM)\s+"?{table}\b', re.IGNORECASE)
    writes = [q["sql"] for q in queries.captured_queries if written.search(q["sql"])]
    assert writes == []


@postgres_only
@pytest.mark.django_db(transaction=True)  # CREATE/DROP INDEX CONCURRENTLY: no transaction
def test_0009_is_reversible() -> None:
    def trigram_indexes() -> dict[str, str]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT indexname, tablename FROM pg_indexes "
                "WHERE tablename LIKE 'mailroom%%' AND indexdef LIKE '%%gin_trgm_ops%%'"
            )
            return dict(cursor.fetchall())

    try:
        call_command("migrate", "mailroom", "0008", verbosity=0)
        back = trigram_indexes()
    finally:
        call_command("migrate", "mailroom", verbosity=0)
    assert back == {
        f"mailroom_message_{column}_trgm_{group}": "mailroom_message"
        for column in ("recipients", "subject")
        for group in ("done", "queued")
    }
    assert trigram_indexes() == {INDEX: "mailroom_messagecontent"}


@postgres_only
def test_the_search_query_is_served_by_the_trigram_index(admin_user) -> None:
    row = queue_message(to=["ada.lovelace@example.com"])
    with connection.cursor() as cursor:
        # Thousands of messages in several statuses, so that nothing but the index is a way in.
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
        cursor.execute(
            "INSERT INTO mailroom_messagecontent (message_id, payload) "
            "SELECT m.id, jsonb_build_object('v', 1, 'subject', m.subject, 'to', m.recipients) "
            "FROM mailroom_message m WHERE m.id <> %s",
            [row.pk],
        )
        cursor.execute("ANALYZE mailroom_message")
        cursor.execute("ANALYZE mailroom_messagecontent")
    request = RequestFactory().get(LIST, {"q": "lovelace"})
    request.user = admin_user
    model_admin = site._registry[Message]
    queryset, _ = model_admin.get_search_results(request, Message.objects.all(), "lovelace")
    assert [m.pk for m in queryset] == [row.pk]
    compiled = queryset.values("pk").query.get_compiler(using="default").as_sql()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # 40,000 rows are still few
        cursor.execute("EXPLAIN " + compiled[0], compiled[1])
        plan = "\n".join(line for (line,) in cursor.fetchall())
    assert f"Bitmap Index Scan on {INDEX}" in plan, plan
    assert "Seq Scan" not in plan, plan
