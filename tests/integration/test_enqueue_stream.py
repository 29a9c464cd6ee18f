"""A bulk enqueue makes each row's payload and MIME as the row is inserted (on PostgreSQL while
the COPY streams): a message found invalid then still refuses the whole call, or is the only
one left out, and the rows stored are the rows an eager build stores."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.core.mail import EmailMessage
from django.db import connection, transaction
from django.db.models.signals import post_init
from django.utils import timezone

import mailroom
from mailroom import inserting
from mailroom.exceptions import InvalidMessage
from mailroom.models import Message, MessageContent, Status, Suppression
from tests.support.spies import spy

pytestmark = pytest.mark.django_db

#: More than inserting streams from, so that on PostgreSQL the bad message is met mid-COPY.
COUNT = inserting._STREAM_FROM + 50
BAD = inserting._STREAM_FROM + 20


@pytest.fixture(autouse=True)
def _queueing(queue_to_smtp):
    return queue_to_smtp


def good(i: int) -> EmailMessage:
    # Message-ID and Date given, so that two calls store the same bytes.
    return EmailMessage(
        f"S{i}",
        ("line\n" * 30) + str(i),
        "app@example.com",
        [f"u{i}@example.com"],
        headers={"Message-ID": f"<{i}@example.com>", "Date": "Mon, 06 Jan 2025 10:00:00 -0000"},
    )


def unstorable(i: int) -> EmailMessage:
    """Passes every check made before rendering; its attachment cannot be stored."""
    message = good(i)
    message.attachments.append(("x.bin", object(), "application/octet-stream"))
    return message


def unrenderable(i: int) -> EmailMessage:
    """Storable, but Django cannot render it: no such charset."""
    message = good(i)
    message.encoding = "no-such-charset"
    return message


def batch(bad: EmailMessage, at: int = BAD, count: int = COUNT) -> list[EmailMessage]:
    return [bad if i == at else good(i) for i in range(count)]


def streams() -> bool:
    return connection.vendor == "postgresql" and inserting._is_psycopg3()


@pytest.mark.parametrize(
    ("make", "words"),
    [(unstorable, "cannot be stored"), (unrenderable, "cannot be rendered")],
    ids=["unstorable", "unrenderable"],
)
def test_a_message_found_invalid_while_inserting_refuses_the_call_and_names_it(make, words) -> None:
    with transaction.atomic():
        Message.objects.create(message_id="<before>")
        with pytest.raises(InvalidMessage, match=words) as info:
            mailroom.enqueue_many(batch(make(BAD)))
        # The caller's transaction goes on: it reads and writes, and keeps what it wrote.
        assert list(Message.objects.values_list("message_id", flat=True)) == ["<before>"]
        Message.objects.create(message_id="<after>")
    assert info.value.index == BAD
    assert sorted(Message.objects.values_list("message_id", flat=True)) == ["<after>", "<before>"]


@pytest.mark.django_db(transaction=True)
def test_in_autocommit_a_message_found_invalid_while_inserting_stores_nothing() -> None:
    assert connection.get_autocommit()
    with pytest.raises(InvalidMessage) as info:
        mailroom.enqueue_many(batch(unstorable(BAD)))
    assert info.value.index == BAD
    assert Message.objects.count() == 0
    assert len(mailroom.enqueue_many([good(1), good(2)])) == 2


def test_skip_invalid_leaves_out_exactly_the_message_found_invalid_while_inserting(
    caplog,
) -> None:
    with caplog.at_level(logging.WARNING, logger="mailroom"):
        created = mailroom.enqueue_many(batch(unrenderable(BAD)), skip_invalid=True)
    expected = [f"S{i}" for i in range(COUNT) if i != BAD]
    assert [row.subject for row in created] == expected
    assert [row.pk for row in created] == sorted({row.pk for row in created})
    stored = dict(Message.objects.values_list("pk", "subject"))
    assert [stored[row.pk] for row in created] == expected
    assert f"message {BAD} not queued: message cannot be rendered" in caplog.text


def test_skip_invalid_with_every_message_found_invalid_while_inserting_stores_none() -> None:
    messages = [unstorable(i) for i in range(COUNT)]
    assert mailroom.enqueue_many(messages, skip_invalid=True) == []
    assert Message.objects.count() == 0


def test_a_message_refused_by_the_checks_refuses_the_call_before_any_is_rendered() -> None:
    """The cheap checks run over the whole call first: a later message without recipients
    is named even when an earlier one could not have been rendered."""
    messages = batch(unrenderable(3))
    messages[BAD] = EmailMessage("S", "B", "app@example.com", [])
    with pytest.raises(InvalidMessage, match="no recipients") as info:
        mailroom.enqueue_many(messages)
    assert info.value.index == BAD
    assert Message.objects.count() == 0


def test_rows_made_while_inserting_are_stored_as_an_eager_build_stores_them(monkeypatch) -> None:
    later = timezone.now() + timedelta(hours=1)
    Suppression.objects.create(address=f"u{BAD}@example.com", reason="bounced")
    streamed = mailroom.enqueue_many(batch(good(BAD)), priority="high", send_at=later)
    monkeypatch.setattr(inserting, "_STREAM_FROM", 10**9)
    eager = mailroom.enqueue_many(batch(good(BAD)), priority="high", send_at=later)
    assert len(streamed) == len(eager) == COUNT
    assert streamed[BAD].status == Status.FAILED  # suppression applied before the insert
    skip = {"id", "created_at"}
    names = [f.attname for f in Message._meta.concrete_fields if f.attname not in skip]
    stored = {m.pk: m for m in Message.objects.all()}

    def values(row: Message) -> list[object]:
        return [bytes(v) if isinstance(v, memoryview) else v for v in map(row.__dict__.get, names)]

    for one, other in zip(streamed, eager, strict=True):
        assert values(stored[one.pk]) == values(stored[other.pk]) == values(one), one.pk


def test_an_init_listener_still_sees_every_row_whole() -> None:
    """With a listener, rows and contents are made by their models' __init__, so that it sees
    each one, and each content whole."""
    rows: list[str] = []
    seen: list[tuple[object, object]] = []

    def on_row(sender, instance, **kwargs) -> None:
        # RowMaker's own template row has no message yet: only the messages' rows count.
        if instance.pk is None and instance.message_id:
            rows.append(instance.message_id)

    def on_content(sender, instance, **kwargs) -> None:
        seen.append((instance.payload, instance.mime))

    post_init.connect(on_row, sender=Message)
    post_init.connect(on_content, sender=MessageContent)
    try:
        mailroom.enqueue_many(batch(good(BAD)))
    finally:
        post_init.disconnect(on_row, sender=Message)
        post_init.disconnect(on_content, sender=MessageContent)
    assert len(rows) == len(seen) == COUNT
    assert all(payload and mime for payload, mime in seen)


# --- PostgreSQL: the COPY streams while the rows are made ---------------------------------


@pytest.fixture
def copy_rows(monkeypatch) -> list[int]:
    """How many rows each COPY was given (skips unless the rows go through COPY)."""
    if not streams():
        pytest.skip("streaming is PostgreSQL's COPY through psycopg 3")
    sizes: list[int] = []
    spy(monkeypatch, inserting, "_insert_copy", lambda rows: sizes.append(len(rows)))
    return sizes


def test_rows_are_made_while_the_copy_streams(copy_rows, monkeypatch) -> None:
    """When the last row is rendered, the server has already stored earlier ones: seen from
    a second session in pg_stat_progress_copy (PostgreSQL 14+)."""
    import psycopg

    from mailroom import compat

    if connection.pg_version < 140000:
        pytest.skip("pg_stat_progress_copy is new in PostgreSQL 14")
    params = connection.get_connection_params()
    pid = connection.connection.info.backend_pid
    rendered: list[int] = []
    stored_before_last: list[int] = []
    real_render = compat.render_mime

    def render(message):
        rendered.append(1)
        if len(rendered) == COUNT:
            with psycopg.connect(**{k: v for k, v in params.items() if k != "context"}) as other:
                (done,) = other.execute(
                    "SELECT coalesce(max(tuples_processed), 0) FROM pg_stat_progress_copy "
                    "WHERE pid = %s",
                    [pid],
                ).fetchone()
            stored_before_last.append(done)
        return real_render(message)

    monkeypatch.setattr(compat, "render_mime", render)
    created = mailroom.enqueue_many(good(i) for i in range(COUNT))
    assert len(created) == COUNT
    assert copy_rows == [COUNT]
    assert stored_before_last[0] > 0, "the server stored nothing before the last row was made"


def test_a_streaming_copy_in_a_transaction_is_under_a_savepoint(
    copy_rows, django_assert_num_queries
) -> None:
    """Ids, SAVEPOINT, COPY of the contents, COPY of the messages, RELEASE: five statements
    for any number of rows. A smaller call makes its rows first and needs no savepoint (three
    statements)."""
    mailroom.enqueue(good(0))  # the suppression list seen empty
    with django_assert_num_queries(5) as queries:
        mailroom.enqueue_many(good(i) for i in range(COUNT))
    assert sum("SAVEPOINT" in q["sql"] for q in queries.captured_queries) == 2
    with django_assert_num_queries(3):
        mailroom.enqueue_many(good(i) for i in range(inserting._STREAM_FROM - 1))
    assert copy_rows == [COUNT, inserting._STREAM_FROM - 1]
