"""PostgreSQL's indexes of mailroom_message after migration 0006: no ``_like`` index on
message_id, and the claim index partial on ``status = 'queued'``, so that a message being sent
or done adds no entry to either. Checked on the catalog, on the plans of the statements that
need an index (the claim as mailroom runs it, the queue's status figures), and back and forth
through the migration."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from mailroom import claiming, operations, wakeup
from mailroom.models import Message

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="partial and _like indexes are PostgreSQL's"
    ),
]

TABLE = Message._meta.db_table
CLAIM = "mailroom_claim"
PARTIAL = "WHERE ((status)::text = 'queued'::text)"


def definitions() -> dict[str, str]:
    """Index name -> CREATE INDEX statement, for mailroom_message's indexes."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [TABLE])
        return dict(cursor.fetchall())


def like_index_name() -> str:
    # How Django named it in 0001 (and names it to drop it).
    with connection.schema_editor() as editor:
        return editor._create_index_name(TABLE, ["message_id"], suffix="_like")


def fill(rows: int = 20000) -> None:
    """Many messages, nearly all done, a few queued (half of them due) or failed; analyzed."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO mailroom_message (status, priority, backend, created_at, due_at, "
            "attempts, message_id, subject, from_email, recipients, refused_recipients, "
            "reason, claimed_by, last_attempt_at) "
            "SELECT CASE WHEN n %% 100 < 90 THEN 'sent' WHEN n %% 100 < 95 THEN 'queued' "
            "WHEN n %% 100 < 96 THEN 'sending' ELSE 'failed' END, (ARRAY[10, 20, 30])[1 + n %% 3], "
            "'default', now() - interval '1 day', now() + (n %% 7 - 3) * interval '1 hour', 0, "
            "'<' || n || '@mailroom.test>', 'Subject', 'app@example.com', '[]', '{}', '', "
            "'', now() - (n %% 50) * interval '1 hour' FROM generate_series(1, %s) AS n",
            [rows],
        )
        cursor.execute(f"ANALYZE {TABLE}")


def plan(sql: str, params: tuple[object, ...] | list[object] = ()) -> str:
    """EXPLAIN of a statement, with sequential scans off: the table is still small enough
    that a scan could win on cost, and the point is whether an index can serve it."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(line for (line,) in cursor.fetchall())


def captured(call: Callable[[], object]) -> list[str]:
    """The statements on mailroom_message that ``call`` runs, as sent (literal values)."""
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        call()
        transaction.set_rollback(True)
    # Literal % of the logged SQL doubled, for EXPLAIN's execute without parameters.
    return [q["sql"].replace("%", "%%") for q in queries.captured_queries if TABLE in q["sql"]]


def indexes_used(explained: str) -> set[str]:
    return set(
        re.findall(
            r"(?:Index Scan|Index Only Scan|Bitmap Index Scan) (?:using|on) (\w+)", explained
        )
    )


def is_partial_on_queued(name: str) -> bool:
    return definitions().get(name, "").endswith(PARTIAL)


def test_no_pattern_index_on_message_id_and_a_partial_claim_index() -> None:
    found = definitions()
    assert not [d for d in found.values() if "pattern_ops" in d], found
    assert like_index_name() not in found
    # message_id keeps its plain index (the admin's equality lookup).
    assert any(d.endswith(f"ON public.{TABLE} USING btree (message_id)") for d in found.values())
    assert found[CLAIM].endswith(f"USING btree (status, priority, due_at, id) {PARTIAL}"), found
    # The lease index stays whole: it serves counts by status over all rows.
    assert found["mailroom_lease"].endswith("USING btree (status, claimed_until)"), found


@pytest.mark.parametrize("exclude_backends", [(), ("paused",)])
def test_the_claim_as_mailroom_runs_it_is_served_by_the_partial_claim_index(
    exclude_backends: tuple[str, ...],
) -> None:
    fill()
    now = timezone.now()
    [sql] = captured(
        lambda: claiming.claim(
            token="t", now=now, limit=100, lease=60, exclude_backends=exclude_backends
        )
    )
    explained = plan(sql)
    assert CLAIM in indexes_used(explained), explained
    assert f"Seq Scan on {TABLE}" not in explained, explained
    assert is_partial_on_queued(CLAIM), definitions()[CLAIM]


def test_the_claim_keeps_the_partial_index_in_a_generic_plan() -> None:
    """With the server_side_binding and prepare_threshold options, psycopg prepares the claim on
    the server, and PostgreSQL may plan it once for any parameters: 'queued' must be in its
    SQL, not a parameter, for such a plan to use an index partial on status = 'queued'."""
    fill()
    statement = claiming._returning("default").sql
    count = statement.count("%s")
    # The lease (status, token, expiry), the due time, the limit: no parameter for 'queued'.
    assert count == 5, statement
    numbered = iter(range(1, count + 1))
    server_side = re.sub("%s", lambda _: f"${next(numbered)}", statement)
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(f"PREPARE mailroom_claim_generic AS {server_side}")
        try:
            with transaction.atomic():
                cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                cursor.execute("SET LOCAL enable_seqscan = off")
                cursor.execute(
                    "EXPLAIN EXECUTE mailroom_claim_generic (%s, %s, %s, %s, %s)",
                    ["sending", "t", now + timedelta(minutes=1), now, 100],
                )
                explained = "\n".join(line for (line,) in cursor.fetchall())
        finally:
            cursor.execute("DEALLOCATE mailroom_claim_generic")
    assert CLAIM in indexes_used(explained), explained
    assert is_partial_on_queued(CLAIM), definitions()[CLAIM]


def test_queue_status_and_the_next_due_time_are_still_served_by_an_index() -> None:
    """The status counts, the oldest due message's age, the waiting count (queue_status, the
    metrics' queries) and an idle worker's next wake-up, with the claim index partial: the
    lease index (status first, over every row) serves what the claim index no longer can."""
    assert is_partial_on_queued(CLAIM), "this test is about the partial claim index"
    fill()
    now = timezone.now()
    statements = captured(lambda: operations.queue_status(now))
    statements += captured(lambda: wakeup.next_wakeup(now, 5.0))
    assert len(statements) == 3, statements
    for sql in statements:
        explained = plan(sql)
        assert indexes_used(explained), explained
        assert f"Seq Scan on {TABLE}" not in explained, explained


@pytest.mark.django_db(transaction=True)  # CREATE/DROP INDEX CONCURRENTLY: no transaction
def test_the_migration_is_reversible() -> None:
    forward = definitions()
    like = like_index_name()
    try:
        call_command("migrate", "mailroom", "0005", verbosity=0)
        back = definitions()
    finally:
        call_command("migrate", "mailroom", verbosity=0)
    again = definitions()
    assert back[like] == (
        f"CREATE INDEX {like} ON public.{TABLE} USING btree (message_id varchar_pattern_ops)"
    )
    assert back[CLAIM] == (
        f"CREATE INDEX {CLAIM} ON public.{TABLE} USING btree (status, priority, due_at, id)"
    )
    # 0009 backwards puts 0005's partial trigram indexes back on the messages too.
    trigram = {
        f"mailroom_message_{c}_trgm_{g}"
        for c in ("recipients", "subject")
        for g in ("done", "queued")
    }
    assert set(back) - set(forward) == {like, *trigram}
    assert like not in again
    assert again[CLAIM].endswith(PARTIAL)
    assert again == forward
