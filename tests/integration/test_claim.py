"""The claim (``mailroom.claiming.claim``): what it takes, in what order, and what it returns.

On PostgreSQL and SQLite the claim is an ``UPDATE ... RETURNING`` whose rows are built by hand;
the rows must be the very ones the ORM's ``SELECT ... FOR UPDATE SKIP LOCKED`` path builds
(still the path of MySQL/MariaDB), which these tests check attribute by attribute. The tests
that need no particular database run on every one.
"""

from __future__ import annotations

import base64
import random
import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models.signals import post_init
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from mailroom import claiming, contents, inserting, loading
from mailroom.claiming import claim
from mailroom.exceptions import UndecodableMessage
from mailroom.loading import load_payloads
from mailroom.models import Message, MessageContent, Priority, Status

pytestmark = pytest.mark.django_db

on_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the one-statement claim is PostgreSQL's"
)
on_sqlite = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's own claim")
#: The claims whose rows are made by hand from an UPDATE ... RETURNING.
one_statement = pytest.mark.skipif(
    connection.vendor not in ("postgresql", "sqlite"),
    reason="the UPDATE ... RETURNING claims are PostgreSQL's and SQLite's",
)
NOW = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.get_fixed_timezone(0))


def message(i: int, **values: Any) -> Message:
    """A queued row with something in every column, unlike the one before it."""
    fields: dict[str, Any] = {
        "priority": (Priority.HIGH, Priority.NORMAL, Priority.LOW)[i % 3],
        "backend": "default",
        "created_at": NOW - timedelta(days=1, microseconds=i),
        "due_at": NOW - timedelta(minutes=i % 5, microseconds=7 * i),
        "expires_at": NOW + timedelta(days=2) if i % 2 else None,
        "last_attempt_at": NOW - timedelta(hours=1) if i % 3 else None,
        "attempts": i % 4,
        "budget_since": NOW - timedelta(hours=2) if i % 4 == 1 else None,
        "message_id": f"<{i}@mailroom.test>",
        "subject": f"Sübject {i} ✉",
        "from_email": "App <app@example.com>",
        "recipients": [f"r{i}@example.com", "ß@exämple.com"],
        "pending_recipients": [f"r{i}@example.com"] if i % 2 else None,
        "refused_recipients": {"x@example.com": {"code": 550, "nested": [1, 2.5, None]}}
        if i % 3 == 2
        else {},
        "reason": "" if i % 2 else f"retry {i}",
    }
    fields.update(values)
    row = Message(**fields)
    payload = {"v": 1, "subject": f"S{i}", "body": "B" * i, "list": [True, None]}
    contents.attach(row, payload, b"\x00MIME\xff" * (i % 2) or None)
    return row


def queue(n: int, **values: Any) -> list[Message]:
    return inserting.insert([message(i, **values) for i in range(n)])


def due_order() -> list[int]:
    return list(Message.objects.due(NOW).values_list("pk", flat=True))


def put_back() -> None:
    Message.objects.update(status=Status.QUEUED, claimed_by="", claimed_until=None)


def attributes(row: Message | MessageContent) -> dict[str, Any]:
    """Everything a claimed row holds, as (type, value), plus how Django sees its state; and
    the same of its content, which the claim brings with it."""
    held = {name: (type(value), value) for name, value in vars(row).items() if name != "_state"}
    cache = dict(row._state.fields_cache)
    if isinstance(row, Message):
        cache["content"] = attributes(cache["content"])
    elif "message" in cache:
        cache["message"] = cache["message"].pk
    return {
        **held,
        "_state.db": row._state.db,
        "_state.adding": row._state.adding,
        "_state.fields_cache": cache,
        "deferred": row.get_deferred_fields(),
    }


def forget_statements() -> None:
    """Make the one-statement claims' SQL anew (it holds INLINE_MIME)."""
    claiming._returning.cache_clear()
    claiming._returning_sqlite.cache_clear()


def orm_claim(token: str, limit: int, **kwargs: Any) -> list[Message]:
    """The ORM's SELECT ... FOR UPDATE SKIP LOCKED path, as MySQL/MariaDB take it."""
    candidates = Message.objects.due(NOW)
    if kwargs.get("exclude_backends"):
        candidates = candidates.exclude(backend__in=list(kwargs["exclude_backends"]))
    until = NOW + timedelta(seconds=300)
    return claiming._claim_skip_locked(candidates, token, until, limit)


# --- On every database ---------------------------------------------------------------------


def test_the_claim_takes_the_due_in_priority_then_due_then_id_order() -> None:
    queue(12)
    queue(3, due_at=NOW + timedelta(seconds=1))  # not due yet
    expected = due_order()
    rows = claim(token="t", now=NOW, limit=7, lease=300)
    assert [r.pk for r in rows] == expected[:7]
    rest = claim(token="u", now=NOW, limit=100, lease=300)
    assert [r.pk for r in rest] == expected[7:]


def test_the_lease_is_set_in_the_database_and_on_the_rows() -> None:
    queue(4)
    rows = claim(token="tok", now=NOW, limit=3, lease=60)
    until = NOW + timedelta(seconds=60)
    assert {(r.status, r.claimed_by, r.claimed_until) for r in rows} == {
        (Status.SENDING, "tok", until)
    }
    stored = Message.objects.filter(status=Status.SENDING).values_list(
        "pk", "claimed_by", "claimed_until"
    )
    assert sorted(stored) == sorted((r.pk, "tok", until) for r in rows)
    assert Message.objects.filter(status=Status.QUEUED, claimed_by="").count() == 1


def test_excluded_backends_are_left_in_the_queue() -> None:
    queue(6)
    Message.objects.filter(pk__in=due_order()[::2]).update(backend="paused")
    Message.objects.filter(pk=due_order()[1]).update(backend="other")
    order = due_order()
    rows = claim(token="t", now=NOW, limit=100, lease=300, exclude_backends=["paused", "gone"])
    assert {r.backend for r in rows} == {"default", "other"}
    assert [r.pk for r in rows] == order[1::2]
    assert Message.objects.filter(status=Status.QUEUED).count() == 3
    assert set(Message.objects.filter(status=Status.QUEUED).values_list("backend", flat=True)) == {
        "paused"
    }


def test_due_before_bounds_what_is_due() -> None:
    queue(5)
    cutoff = NOW - timedelta(minutes=2)
    rows = claim(token="t", now=NOW, limit=100, lease=300, due_before=cutoff)
    assert rows
    assert all(r.due_at <= cutoff for r in rows)
    assert all(m.due_at > cutoff for m in Message.objects.filter(status=Status.QUEUED))


def test_nothing_due_is_an_empty_claim() -> None:
    queue(2, due_at=NOW + timedelta(hours=1))
    assert claim(token="t", now=NOW, limit=10, lease=300) == []
    assert not Message.objects.filter(status=Status.SENDING).exists()


def test_claimed_rows_come_with_their_mime_and_leave_the_payload_to_load_payloads(
    django_assert_num_queries,
) -> None:
    queue(4)
    rows = claim(token="t", now=NOW, limit=4, lease=300)
    assert all(r.get_deferred_fields() == set() for r in rows)
    with django_assert_num_queries(0):
        got = [r.content for r in rows]
    assert all(c.get_deferred_fields() == {"payload"} for c in got)
    assert [c.mime for c in got] == [
        MessageContent.objects.values_list("mime", flat=True).get(pk=r.pk) for r in rows
    ]
    load_payloads(rows)
    # Rows with stored MIME bytes do not need their payload; the others have it now.
    assert all(("payload" in vars(c)) == (c.mime is None) for c in got)
    later = next(c for c in got if c.mime is not None)
    stored = MessageContent.objects.values_list("payload", flat=True).get(pk=later.pk)
    assert later.payload == stored  # read from the database on access
    assert later.get_deferred_fields() == set()


def test_a_message_without_content_is_claimed_and_says_so_when_used() -> None:
    """mailroom always writes a content row; one inserted by hand may lack it."""
    [row] = queue(1)
    MessageContent.objects.filter(pk=row.pk).delete()
    [claimed] = claim(token="t", now=NOW, limit=4, lease=300)
    load_payloads([claimed])
    with pytest.raises(UndecodableMessage, match="no stored content"):
        contents.of(claimed)


# --- The UPDATE ... RETURNING claims (PostgreSQL's one statement, SQLite's) -------------------


@one_statement
def test_the_rows_are_the_ones_the_orm_claim_builds_attribute_by_attribute() -> None:
    queue(30)
    order = due_order()
    mine = claim(token="t", now=NOW, limit=20, lease=300)
    put_back()
    theirs = orm_claim("t", 20)
    assert [r.pk for r in mine] == [r.pk for r in theirs] == order[:20]
    for a, b in zip(mine, theirs, strict=True):
        assert attributes(a) == attributes(b)
    # And what is read later is the same too.
    for a, b in zip(mine, theirs, strict=True):
        assert a.content.payload == b.content.payload
    assert attributes(mine[0])["deferred"] == set()


@one_statement
def test_with_an_init_listener_the_rows_are_made_by_from_db_and_seen_by_it() -> None:
    queue(5)
    seen: list[int] = []

    def listener(sender: type[Message], instance: Message, **kwargs: Any) -> None:
        seen.append(instance.pk)

    post_init.connect(listener, sender=Message)
    try:
        mine = claim(token="t", now=NOW, limit=5, lease=300)
    finally:
        post_init.disconnect(listener, sender=Message)
    assert sorted(seen) == sorted(r.pk for r in mine)
    put_back()
    theirs = orm_claim("t", 5)
    for a, b in zip(mine, theirs, strict=True):
        assert attributes(a) == attributes(b)


@one_statement
def test_excluding_backends_gives_the_rows_the_orm_claim_gives() -> None:
    queue(9)
    Message.objects.filter(pk__in=due_order()[1::3]).update(backend="paused")
    mine = claim(token="t", now=NOW, limit=4, lease=300, exclude_backends={"paused"})
    put_back()
    theirs = orm_claim("t", 4, exclude_backends=["paused"])
    assert [attributes(r) for r in mine] == [attributes(r) for r in theirs]


@on_postgres
def test_the_claim_is_one_logged_statement(django_assert_num_queries) -> None:
    queue(3)
    with django_assert_num_queries(1) as queries:
        claim(token="t", now=NOW, limit=10, lease=300, exclude_backends=["x"])
    [sql] = [q["sql"] for q in queries.captured_queries]
    assert sql.startswith('WITH claimed AS (UPDATE "mailroom_message" SET "status"')
    assert "FOR UPDATE SKIP LOCKED" in sql
    assert "RETURNING" in sql
    assert '"mime"' in sql
    assert '"payload"' not in sql


# --- SQLite's ---------------------------------------------------------------------------------


@on_sqlite
def test_on_sqlite_the_claim_is_an_update_returning_then_a_read_of_the_mime(
    django_assert_num_queries,
) -> None:
    queue(3)
    with django_assert_num_queries(2) as queries:
        claim(token="t", now=NOW, limit=10, lease=300, exclude_backends=["x"])
    update, read = (q["sql"] for q in queries.captured_queries)
    assert update.startswith('UPDATE "mailroom_message" SET "status"')
    assert "RETURNING" in update
    assert '"mime"' in read
    assert '"payload"' not in update + read


def outer_plan(sql: str) -> str:
    """How SQLite's planner finds the rows the outer UPDATE of ``sql`` changes."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + sql)
        return str(cursor.fetchall()[0][-1])


@on_sqlite
@pytest.mark.parametrize("returning", [True, False], ids=["returning", "before-3.35"])
def test_on_sqlite_the_claim_fetches_its_rows_by_id_not_by_walking_the_queue(
    monkeypatch, returning: bool
) -> None:
    """Without an ANALYZE's statistics (nothing in a Django app gathers them), a status test
    on the outer UPDATE made SQLite walk every queued row of the claim index, the whole queue
    at every claim, checking each against the ids the subquery chose."""
    monkeypatch.setattr(claiming, "_sqlite_returns", lambda connection: returning)
    queue(30)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
        assert cursor.fetchone() == (0,)
    with CaptureQueriesContext(connection) as queries:
        assert len(claim(token="t", now=NOW, limit=5, lease=300)) == 5
    [update] = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert "INTEGER PRIMARY KEY" in outer_plan(update)
    # Where the same statement with the status test would walk the claim index instead.
    test = """AND "mailroom_message"."status" = 'queued'"""
    tested = (
        update.replace(" RETURNING ", f" {test} RETURNING ", 1) if returning else f"{update} {test}"
    )
    assert "INDEX mailroom_claim (status=?)" in outer_plan(tested)


@on_sqlite
def test_on_an_sqlite_without_returning_the_orm_claim_gives_the_same_rows(monkeypatch) -> None:
    queue(12)
    Message.objects.filter(pk__in=due_order()[::4]).update(backend="paused")
    mine = claim(token="t", now=NOW, limit=8, lease=300, exclude_backends={"paused"})
    put_back()
    monkeypatch.setattr(claiming, "_sqlite_returns", lambda connection: False)
    theirs = claim(token="t", now=NOW, limit=8, lease=300, exclude_backends={"paused"})
    assert [r.pk for r in mine] == [r.pk for r in theirs]
    assert [attributes(r) for r in mine] == [attributes(r) for r in theirs]


# --- Two claimers at once (real transactions) --------------------------------------------------

concurrent = pytest.mark.skipif(
    connection.vendor == "sqlite", reason="SQLite has one writer at a time"
)


def in_thread(work: Any) -> Any:
    """Run ``work`` on its own thread, so on its own database connection; return its result."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the claim waited for the other claimer's locks"
    if errors:
        raise errors[0]
    return result[0]


@pytest.mark.django_db(transaction=True)
@concurrent
def test_a_claimer_skips_the_rows_another_claimer_holds_without_waiting() -> None:
    queue(10)
    order = due_order()
    with transaction.atomic():
        # The first claim's locks are held until this block commits.
        first = claim(token="a", now=NOW, limit=4, lease=300)
        second = in_thread(lambda: claim(token="b", now=NOW, limit=4, lease=300))
    assert [r.pk for r in first] == order[:4]
    assert [r.pk for r in second] == order[4:8]
    held = dict(Message.objects.filter(status=Status.SENDING).values_list("pk", "claimed_by"))
    assert held == {**dict.fromkeys(order[:4], "a"), **dict.fromkeys(order[4:8], "b")}


@pytest.mark.django_db(transaction=True)
@concurrent
def test_claimers_racing_for_the_queue_never_take_the_same_row() -> None:
    queue(600)
    start = threading.Barrier(4)
    results: dict[str, list[int]] = {}

    def work(token: str) -> None:
        taken: list[int] = []
        start.wait()
        try:
            while rows := claim(token=token, now=NOW, limit=7, lease=300):
                taken += [r.pk for r in rows]
            results[token] = taken
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    taken = [pk for pks in results.values() for pk in pks]
    assert len(results) == 4
    assert len(taken) == len(set(taken)) == 600
    by_token = dict(Message.objects.values_list("pk", "claimed_by"))
    assert all(by_token[pk] == token for token, pks in results.items() for pk in pks)


def test_a_message_bigger_than_the_inline_limit_is_claimed_without_its_bytes(
    monkeypatch, django_assert_num_queries
) -> None:
    """Its bytes are read by read_mime, when it is about to be sent, and not kept on the row;
    it needs no payload either."""
    monkeypatch.setattr(claiming, "INLINE_MIME", 4)
    forget_statements()
    try:
        queue(4)  # MIME bytes of 0 (None) or 6 bytes, by turns
        rows = claim(token="t", now=NOW, limit=4, lease=300)
    finally:
        forget_statements()
    got = {r.pk: r.content for r in rows}
    stored = dict(MessageContent.objects.values_list("pk", "mime"))
    big = [pk for pk, mime in stored.items() if mime is not None]
    assert big
    assert all("mime" not in vars(got[pk]) for pk in big)
    load_payloads(rows)
    for pk, content in got.items():
        assert ("payload" in vars(content)) == (pk not in big)
    for pk in big:
        with django_assert_num_queries(1):
            assert loading.read_mime(got[pk]) == bytes(stored[pk])
        assert "mime" not in vars(got[pk])  # read, and let go


def test_a_big_messages_bytes_are_read_ahead_and_let_go_after(monkeypatch) -> None:
    """prefetch_mime reads a deferred message's bytes into its content (while the message
    before it is with the server); let_go lets go of them once it is sent, and only of
    bytes over the limit. A read that fails ahead is left for the read at send time."""
    monkeypatch.setattr(claiming, "INLINE_MIME", 4)
    forget_statements()
    try:
        queue(4)
        rows = claim(token="t", now=NOW, limit=4, lease=300)
    finally:
        forget_statements()
    stored = dict(MessageContent.objects.values_list("pk", "mime"))
    big = [r for r in rows if stored[r.pk] is not None]
    small = [r for r in rows if stored[r.pk] is None]
    assert big
    assert small

    def failing(content):
        raise RuntimeError("the database went away")

    with monkeypatch.context() as m:
        m.setattr(loading, "read_mime", failing)
        loading.prefetch_mime(big[0])
    assert "mime" not in vars(big[0].content)  # still deferred
    for row in rows:
        loading.prefetch_mime(row)
    assert all(row.content.mime == stored[row.pk] for row in rows)
    for row in rows:
        loading.let_go(row)
    assert all("mime" not in vars(row.content) for row in big)
    assert all(vars(row.content)["mime"] is None for row in small)


def test_a_big_payload_stays_in_the_database_until_it_is_used_and_is_let_go_after(
    monkeypatch, django_assert_num_queries
) -> None:
    """Rows without MIME bytes (ESP backends) are rebuilt from their payload: a batch reads
    those up to loading.INLINE_PAYLOAD in one query, a bigger one when it is used, and lets
    that one go once it is sent."""
    monkeypatch.setattr(loading, "INLINE_PAYLOAD", 1000)
    rows = []
    # Like an attachment, base64 of random bytes: PostgreSQL's size is the stored one,
    # compressed where it compresses, and this does not.
    noise = base64.b64encode(random.Random(1).randbytes(4000)).decode()
    for i, body in enumerate(("small", noise, "tiny")):
        row = message(i)
        contents.attach(row, {"v": 1, "subject": f"S{i}", "body": body}, None)
        rows.append(row)
    small, big, tiny = (r.pk for r in inserting.insert(rows))
    claimed = {r.pk: r for r in claim(token="t", now=NOW, limit=4, lease=300)}
    with django_assert_num_queries(1):
        load_payloads(list(claimed.values()))
    held = {pk: vars(row.content) for pk, row in claimed.items()}
    assert held[small]["payload"]["body"] == "small"
    assert held[tiny]["payload"]["body"] == "tiny"
    assert "payload" not in held[big]
    with django_assert_num_queries(1):
        assert claimed[big].content.payload["body"] == noise
    for row in claimed.values():
        loading.let_go(row)
    assert "payload" not in vars(claimed[big].content)
    assert vars(claimed[small].content)["payload"]["body"] == "small"
