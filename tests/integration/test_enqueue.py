"""Queueing: Django's mail API and mailroom.enqueue put messages in the database, and only there."""

from __future__ import annotations

import warnings

import pytest
from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.db import connection, transaction
from django.utils import timezone

import mailroom
from mailroom import contents
from mailroom.exceptions import InvalidMessage
from mailroom.models import Attempt, Message, MessageContent, Priority, Status
from tests.support.spies import spy

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _queueing(queue_to_smtp):
    return queue_to_smtp


def test_send_mail_queues_and_returns_one(smtp_server) -> None:
    assert mail.send_mail("Hi", "Body", "from@example.com", ["to@example.com"]) == 1
    row = Message.objects.get()
    assert (row.status, row.subject, row.recipients) == (Status.QUEUED, "Hi", ["to@example.com"])
    assert smtp_server.count == 0, "enqueueing must not talk to the mail server"


def test_send_mass_mail_queues_every_message_with_one_insert_per_table(
    django_assert_num_queries,
) -> None:
    # With an empty suppression list (seen empty a moment ago), the inserts are the only
    # queries: one for the messages, one for their contents; on PostgreSQL a COPY each,
    # after one query that takes the rows' ids from the sequence.
    mailroom.enqueue(EmailMessage("S", "B", "from@example.com", ["warm@example.com"]))
    batch = [(f"S{i}", "B", "from@example.com", [f"to{i}@example.com"]) for i in range(40)]
    expected = 3 if connection.vendor == "postgresql" else 2
    with django_assert_num_queries(expected) as queries:
        assert mail.send_mass_mail(batch) == 40
    inserts = [q["sql"] for q in queries.captured_queries if "nextval" not in q["sql"]]
    assert len(inserts) == 2
    assert Message.objects.count() == 41


def test_get_connection_send_messages_returns_the_number_queued() -> None:
    messages = [
        EmailMessage(f"S{i}", "B", "f@example.com", [f"t{i}@example.com"]) for i in range(3)
    ]
    assert mail.get_connection().send_messages(messages) == 3
    assert mail.get_connection().send_messages([]) == 0


def test_email_message_send_queues() -> None:
    assert EmailMessage("S", "B", "f@example.com", ["t@example.com"]).send() == 1
    assert Message.objects.count() == 1


def test_mail_admins_queues(settings) -> None:
    # Django 6.0 wants plain strings; 5.2 wants (name, address) pairs.
    import django

    settings.ADMINS = (
        ["admin@example.com"] if django.VERSION >= (6, 0) else [("Admin", "admin@example.com")]
    )
    mail.mail_admins("Broken", "Traceback")
    assert Message.objects.get().recipients == ["admin@example.com"]


def test_rolled_back_transaction_queues_nothing() -> None:
    def view() -> None:
        with transaction.atomic():
            mail.send_mail("Hi", "Body", "from@example.com", ["to@example.com"])
            raise RuntimeError("the view failed after sending")

    with pytest.raises(RuntimeError):
        view()
    assert Message.objects.count() == 0


def test_enqueue_takes_priority_send_at_and_backend() -> None:
    from django.utils import timezone

    later = timezone.now() + timezone.timedelta(hours=1)
    row = mailroom.enqueue(
        EmailMessage("S", "B", "f@example.com", ["t@example.com"]),
        priority="high",
        send_at=later,
        backend="default",
    )
    row.refresh_from_db()
    assert (row.priority, row.due_at, row.backend) == (Priority.HIGH, later, "default")


def test_message_id_and_date_are_pinned_at_enqueue_without_touching_the_callers_message() -> None:
    message = EmailMessage("S", "B", "f@example.com", ["t@example.com"])
    row = mailroom.enqueue(message)
    assert row.message_id.startswith("<")
    assert row.message_id.endswith(">")
    assert row.content.payload  # stored as JSON
    assert "Message-ID" not in message.extra_headers
    assert row.message_id.encode() in bytes(row.content.mime)


def test_a_message_id_given_by_the_caller_is_kept() -> None:
    message = EmailMessage(
        "S", "B", "f@example.com", ["t@example.com"], headers={"Message-Id": "<mine@example.com>"}
    )
    assert mailroom.enqueue(message).message_id == "<mine@example.com>"


def test_cc_bcc_are_envelope_recipients_and_bcc_is_not_a_header() -> None:
    message = EmailMessage(
        "S", "B", "f@example.com", ["t@example.com"], cc=["c@example.com"], bcc=["b@example.com"]
    )
    row = mailroom.enqueue(message)
    assert row.recipients == ["t@example.com", "c@example.com", "b@example.com"]
    assert b"b@example.com" not in bytes(row.content.mime)


def test_html_alternative_and_attachment_are_stored() -> None:
    message = EmailMultiAlternatives("S", "text", "f@example.com", ["t@example.com"])
    message.attach_alternative("<p>html</p>", "text/html")
    message.attach("data.bin", b"\x00\x01\x02", "application/octet-stream")
    row = mailroom.enqueue(message)
    assert b"text/html" in bytes(row.content.mime)
    assert b"data.bin" in bytes(row.content.mime)


def test_an_address_ending_in_a_newline_is_never_stored_with_it(settings) -> None:
    """The plain-address shortcut must not keep what Django's own parse refuses (Django 6)
    or takes off (Django 5.2). Rendered at enqueue (SMTP delivery), the message is refused on
    both: Django 5.2 will not write the newline into its To header. (The fast rendering
    once wrote it there, a bare LF that ended the headers early.)"""
    from mailroom.compat import DJANGO_6

    message = EmailMessage("S", "B", "f@example.com", ["to@example.com\n"])
    refused = "invalid recipient address" if DJANGO_6 else "can't contain newlines"
    with pytest.raises(InvalidMessage, match=refused):
        mailroom.enqueue(message)
    assert Message.objects.count() == 0
    if DJANGO_6:
        return
    # Not rendered at enqueue: stored, without the newline, for the backend to render.
    settings.MAILROOM = {**settings.MAILROOM, "PRERENDER": False}
    mailroom.enqueue(message)
    assert Message.objects.get().recipients == ["to@example.com"]


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: EmailMessage("S", "B", "f@example.com", []), "no recipients"),
        (
            lambda: EmailMessage("S", "B", "f@example.com", ["to@example.com\nBcc: x@evil.com"]),
            "invalid recipient address",
        ),
        (
            lambda: EmailMessage("S\nBcc: x@evil.com", "B", "f@example.com", ["t@example.com"]),
            "newline",
        ),
        (
            lambda: EmailMessage(
                "S", "B", "f@example.com", ["t@example.com"], headers={"X-Tag": "a\r\nb"}
            ),
            "newline",
        ),
        (lambda: EmailMessage("S", "B", "not an address <<", ["t@example.com"]), "sender"),
    ],
    ids=[
        "no-recipients",
        "newline-in-address",
        "newline-in-subject",
        "newline-in-header",
        "bad-sender",
    ],
)
def test_bad_input_raises_a_clear_error_and_stores_nothing(build, expected) -> None:
    with pytest.raises(InvalidMessage, match=expected):
        mailroom.enqueue(build())
    assert Message.objects.count() == 0


def test_an_attachment_that_cannot_be_stored_is_refused() -> None:
    message = EmailMessage("S", "B", "f@example.com", ["t@example.com"])
    message.attachments.append(("x.bin", object(), "application/octet-stream"))
    with pytest.raises(InvalidMessage, match="cannot be stored"):
        mailroom.enqueue(message)
    assert Message.objects.count() == 0


def test_one_bad_message_in_a_bulk_call_refuses_the_call_and_names_it() -> None:
    good = EmailMessage("S", "B", "f@example.com", ["t@example.com"])
    bad = EmailMessage("S", "B", "f@example.com", [])
    with pytest.raises(InvalidMessage) as info:
        mail.get_connection().send_messages([good, bad])
    assert info.value.index == 1
    assert Message.objects.count() == 0


def test_fail_silently_queues_the_good_ones_and_skips_the_bad() -> None:
    good = EmailMessage("S", "B", "f@example.com", ["t@example.com"])
    bad = EmailMessage("S", "B", "f@example.com", [])
    assert mail.get_connection(fail_silently=True).send_messages([good, bad, good]) == 2
    assert Message.objects.count() == 2


def test_a_bulk_enqueue_stores_every_field_as_built_and_returns_ids_in_order() -> None:
    """Each row read back equals the row that was built (PostgreSQL inserts them as one JSON
    document, other databases through bulk_create): bytes, JSON, dates, non-ASCII text."""
    messages = []
    for i in range(30):
        m = EmailMessage(
            f"Grüße {i} ✓", f"Körper {i}\n.leading dot", "app@example.com", [f"u{i}@x.org"]
        )
        if i % 3 == 0:
            m.attach("data.bin", bytes(range(256)) * 4, "application/octet-stream")
        messages.append(m)
    created = mailroom.enqueue_many(messages, priority="high", send_at=timezone.now())
    assert [m.subject for m in created] == [f"Grüße {i} ✓" for i in range(30)]
    assert [m.pk for m in created] == sorted(m.pk for m in created)
    fields = [f.attname for f in Message._meta.concrete_fields]
    for built in created:
        stored = Message.objects.get(pk=built.pk)
        for name in fields:
            want, got = getattr(built, name), getattr(stored, name)
            if name == "mime":
                want, got = bytes(want), bytes(got)
            assert got == want, (built.pk, name)


def test_a_bulk_enqueue_larger_than_one_statement_keeps_every_row_and_its_id() -> None:
    """SQLite takes at most 32,766 parameters per statement: 2,000 messages need two."""
    created = mailroom.enqueue_many(
        EmailMessage(f"S{i}", "B", "app@example.com", [f"u{i}@x.org"]) for i in range(2000)
    )
    assert len({m.pk for m in created}) == 2000
    stored = dict(Message.objects.values_list("pk", "subject"))
    assert [stored[m.pk] for m in created] == [f"S{i}" for i in range(2000)]


def test_a_bulk_enqueue_too_big_for_one_statement_is_split(monkeypatch) -> None:
    """Where PostgreSQL takes the rows as JSON documents (psycopg2, naive datetimes), they are
    of bounded size (a value can never reach 1 GB there): many big messages go in several
    statements, all or none. (Through psycopg 3 the rows go in one COPY, which has no limit;
    test_without_copy_a_bulk_enqueue_too_big_for_one_document_is_split forces the JSON path.)"""
    from mailroom import inserting

    monkeypatch.setattr(inserting, "_DOCUMENT_LIMIT", 4000)
    created = mailroom.enqueue_many(
        EmailMessage(f"S{i}", ("B" * 60 + "\n") * 15, "app@example.com", [f"u{i}@x.org"])
        for i in range(20)
    )
    stored = dict(Message.objects.values_list("pk", "subject"))
    assert [stored[m.pk] for m in created] == [f"S{i}" for i in range(20)]
    assert all(bytes(m.content.mime).count(b"B" * 60) == 15 for m in Message.objects.all())


# --- PostgreSQL through psycopg 3: the bulk insert is a binary COPY ------------------------

_ON_POSTGRES = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="COPY is the PostgreSQL bulk insert"
)


@pytest.fixture
def copies(monkeypatch) -> list[int]:
    """The size of every insert that went through COPY (skips unless psycopg 3 is in use)."""
    from mailroom import inserting

    if not inserting._is_psycopg3():
        pytest.skip("COPY needs psycopg 3")
    sizes: list[int] = []
    spy(monkeypatch, inserting, "_insert_copy", lambda rows: sizes.append(len(rows)))
    return sizes


def _varied_messages(count: int) -> list[EmailMessage]:
    messages = []
    for i in range(count):
        m = EmailMessage(
            f"Grüße {i} ✓",
            f"Körper {i}\n.leading dot",
            "app@example.com",
            [f"u{i}@x.org"],
            cc=[f"c{i}@x.org"] if i % 2 else [],
        )
        if i % 3 == 0:
            m.attach("data.bin", bytes(range(256)) * 4, "application/octet-stream")
        messages.append(m)
    return messages


def with_content(row: Message) -> Message:
    contents.attach(row, {"v": 1}, None)
    return row


def _assert_stored_as_built(created) -> None:
    fields = [f.attname for f in Message._meta.concrete_fields]
    stored = {m.pk: m for m in Message.objects.filter(pk__in=[m.pk for m in created])}
    assert len(stored) == len(created)
    for built in created:
        for name in fields:
            want, got = getattr(built, name), getattr(stored[built.pk], name)
            assert got == want, (built.pk, name)
    # And each content, read afresh.
    stored_contents = MessageContent.objects.in_bulk([m.pk for m in created])
    assert len(stored_contents) == len(created)
    for built in created:
        content = stored_contents[built.pk]
        assert content.payload == built.content.payload, built.pk
        want = built.content.mime
        assert (None if want is None else bytes(want)) == (
            None if content.mime is None else bytes(content.mime)
        ), built.pk


@_ON_POSTGRES
def test_a_bulk_enqueue_goes_through_copy_with_every_field_and_id_in_order(copies) -> None:
    later = timezone.now() + timezone.timedelta(hours=2)
    created = mailroom.enqueue_many(
        _varied_messages(25), priority="low", send_at=later, expires_at=later
    )
    assert copies == [25]
    assert [m.subject for m in created] == [f"Grüße {i} ✓" for i in range(25)]
    assert [m.pk for m in created] == sorted({m.pk for m in created})
    _assert_stored_as_built(created)


@_ON_POSTGRES
def test_one_message_is_one_insert_statement_not_a_copy(copies, django_assert_num_queries) -> None:
    mailroom.enqueue(EmailMessage("S", "B", "f@example.com", ["warm@example.com"]))
    with django_assert_num_queries(1):
        mailroom.enqueue(EmailMessage("S", "B", "f@example.com", ["t@example.com"]))
    assert copies == []


@_ON_POSTGRES
def test_the_copy_joins_the_callers_transaction_and_rolls_back_with_it(copies) -> None:
    seen: list[int] = []

    def view() -> None:
        with transaction.atomic():
            created = mailroom.enqueue_many(_varied_messages(5))
            seen.append(Message.objects.filter(pk__in=[m.pk for m in created]).count())
            raise RuntimeError("the view failed after queueing")

    with pytest.raises(RuntimeError):
        view()
    assert (copies, seen) == ([5], [5])
    assert Message.objects.count() == 0


@_ON_POSTGRES
@pytest.mark.django_db(transaction=True)
def test_the_copy_commits_on_its_own_in_autocommit(copies) -> None:
    assert connection.get_autocommit()
    created = mailroom.enqueue_many(_varied_messages(4))
    assert copies == [4]
    assert not connection.in_atomic_block
    _assert_stored_as_built(created)


@_ON_POSTGRES
def test_a_failed_copy_raises_djangos_error_and_stores_nothing(copies) -> None:
    from django.db import DataError

    from mailroom import inserting

    rows = [
        with_content(
            Message(
                message_id=f"<{i}@x.org>",
                subject="S" * (300 if i == 2 else 10),  # the column takes 255
                from_email="f@x.org",
                recipients=[f"u{i}@x.org"],
            )
        )
        for i in range(3)
    ]
    with pytest.raises(DataError), transaction.atomic():
        inserting.insert(rows)
    assert copies == [3]
    assert Message.objects.count() == 0  # the outer transaction is still usable


@_ON_POSTGRES
def test_without_copy_the_json_path_stores_the_same(monkeypatch) -> None:
    """psycopg2 has no COPY from Python objects: its rows travel as one JSON document."""
    from mailroom import inserting

    monkeypatch.setattr(inserting, "_is_psycopg3", lambda: False)
    created = mailroom.enqueue_many(_varied_messages(12), priority="high")
    assert [m.pk for m in created] == sorted({m.pk for m in created})
    _assert_stored_as_built(created)


@_ON_POSTGRES
def test_a_naive_send_at_takes_the_json_path_and_is_read_as_utc(copies) -> None:
    """timestamptz has no binary form for a naive datetime; PostgreSQL reads the JSON text in
    the connection's time zone (UTC under USE_TZ), as it always has."""
    from datetime import datetime
    from datetime import timezone as dt_timezone

    naive = datetime(2030, 1, 2, 3, 4, 5)
    created = mailroom.enqueue_many(_varied_messages(3), send_at=naive)
    assert copies == []
    stored = Message.objects.get(pk=created[0].pk)
    assert stored.due_at == naive.replace(tzinfo=dt_timezone.utc)


@_ON_POSTGRES
def test_a_big_copy_keeps_every_row_and_its_id(copies) -> None:
    """One COPY streams any number of rows (psycopg sends them 32 KB at a time)."""
    created = mailroom.enqueue_many(
        EmailMessage(f"S{i}", ("B" * 60 + "\n") * 40, "app@example.com", [f"u{i}@x.org"])
        for i in range(1500)
    )
    assert copies == [1500]
    stored = dict(Message.objects.values_list("pk", "subject"))
    assert [stored[m.pk] for m in created] == [f"S{i}" for i in range(1500)]
    assert len(set(stored)) == 1500


@_ON_POSTGRES
def test_without_copy_a_bulk_enqueue_too_big_for_one_document_is_split(monkeypatch) -> None:
    """The JSON path (psycopg2) still splits its document, all or none."""
    from mailroom import inserting

    monkeypatch.setattr(inserting, "_is_psycopg3", lambda: False)
    monkeypatch.setattr(inserting, "_DOCUMENT_LIMIT", 4000)
    real = inserting._documents
    counts: list[int] = []

    def documents(rows):
        made = real(rows)
        counts.append(len(made))
        return made

    monkeypatch.setattr(inserting, "_documents", documents)
    created = mailroom.enqueue_many(
        EmailMessage(f"S{i}", ("B" * 60 + "\n") * 15, "app@example.com", [f"u{i}@x.org"])
        for i in range(20)
    )
    assert counts[0] > 1
    stored = dict(Message.objects.values_list("pk", "subject"))
    assert [stored[m.pk] for m in created] == [f"S{i}" for i in range(20)]


@pytest.fixture
def bound(monkeypatch) -> list[Message]:
    """Every row inserted alone with its values bound on the server (psycopg 3)."""
    from mailroom import inserting

    if not inserting._is_psycopg3():
        pytest.skip("server-side binding here is psycopg 3's")
    rows: list[Message] = []
    spy(monkeypatch, inserting, "_insert_bound", rows.append)
    return rows


@_ON_POSTGRES
def test_one_message_binds_its_values_and_stores_every_field(bound) -> None:
    later = timezone.now() + timezone.timedelta(hours=2)
    for message in _varied_messages(4):  # with and without an attachment, cc, non-ASCII
        created = mailroom.enqueue(message, priority="high", send_at=later, expires_at=later)
        _assert_stored_as_built([created])
    assert len(bound) == 4


@_ON_POSTGRES
def test_the_bound_insert_joins_the_callers_transaction(bound) -> None:
    seen: list[bool] = []

    def view() -> None:
        with transaction.atomic():
            mailroom.enqueue(EmailMessage("S", "B", "f@example.com", ["t@example.com"]))
            seen.append(Message.objects.filter(pk=bound[0].pk).exists())
            raise RuntimeError("the view failed after queueing")

    with pytest.raises(RuntimeError):
        view()
    assert seen == [True]
    assert Message.objects.count() == 0


@_ON_POSTGRES
def test_a_failed_bound_insert_raises_djangos_error(bound) -> None:
    from django.db import DataError

    from mailroom import inserting

    row = with_content(
        Message(
            message_id="<1@x.org>",
            subject="S" * 300,  # the column takes 255
            from_email="f@x.org",
            recipients=["u@x.org"],
        )
    )
    with pytest.raises(DataError), transaction.atomic():
        inserting.insert([row])
    assert Message.objects.count() == 0


# --- Values prepared for the hand-written inserts -----------------------------------------------


def _comparable(value):
    """A prepared value in a form that compares by content (psycopg's Jsonb and Binary
    wrappers compare by identity)."""
    inner = getattr(value, "obj", value)
    if isinstance(inner, (bytes, bytearray, memoryview)):
        inner = bytes(inner)
    return (type(value), inner)


_SAMPLES = [
    None,
    "",
    "text ✓",
    0,
    -3,
    7,
    1_000_003,
    True,
    False,
    1.5,
    float("inf"),
    timezone.now(),
    Status.QUEUED,  # a TextChoices member: a str subclass
    Priority.HIGH,  # an IntegerChoices member: an int subclass
    {"v": 1, "list": [1, None]},
    [],
    ["a@example.com"],
    b"\x00MIME\xff",
]


@pytest.mark.parametrize(
    "model", [Message, MessageContent, Attempt], ids=["message", "content", "attempt"]
)
def test_each_columns_shortcut_prepares_what_the_field_prepares(model) -> None:
    """The hand-written inserts (a message and its content at enqueue, an attempt on the send
    path) prepare values through preparing.preparer's shortcuts: each must give what the
    field's own get_db_prep_save gives, for every value it may meet (and any value a shortcut
    does not know goes the whole way)."""
    from datetime import datetime, timedelta
    from datetime import timezone as dt_timezone

    from django.core.exceptions import ValidationError
    from django.db import connections

    from mailroom.columns import stored_fields
    from mailroom.preparing import preparer

    db = connections["default"]
    elsewhere = dt_timezone(timedelta(hours=5, minutes=30))
    samples = [
        *_SAMPLES,
        datetime(2030, 1, 2, 3, 4, 5),  # naive: warned about and made aware, the whole way
        datetime(2030, 1, 2, 3, 4, 5, 678, tzinfo=elsewhere),  # aware, not in UTC
    ]
    checked = 0
    for field in stored_fields(model):
        prepare = preparer(field)
        for value in samples:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a naive datetime's warning
                try:
                    want = field.get_db_prep_save(value, db)
                except (TypeError, ValueError, ValidationError, OverflowError) as exc:
                    # A value this column could never hold: refused by the shortcut too.
                    with pytest.raises(type(exc)):
                        prepare(value)
                    continue
                got = prepare(value)
            assert _comparable(got) == _comparable(want), (field.name, value)
            checked += 1
    assert checked > len(stored_fields(model))


def test_a_field_that_prepares_its_own_way_takes_no_shortcut() -> None:
    """A subclass of a Django field that changes how values are prepared goes the whole way;
    one that changes something else (mailroom's ContentKey: the column's type) takes its
    base's shortcut."""
    from django.db import models

    from mailroom.models import ContentKey
    from mailroom.preparing import _prepares_as, preparer

    class Shouting(models.CharField):
        def get_prep_value(self, value):
            return super().get_prep_value(value).upper()

    assert preparer(Shouting(max_length=10))("quiet") == "QUIET"
    assert not _prepares_as(Shouting(max_length=10), models.CharField)
    assert _prepares_as(models.EmailField(), models.CharField)
    assert _prepares_as(MessageContent._meta.get_field("message"), models.ForeignKey)
    assert isinstance(MessageContent._meta.get_field("message"), ContentKey)
