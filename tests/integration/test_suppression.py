"""The suppression list, by hand or automatic: applied at enqueue and, by the worker, on send."""

from __future__ import annotations

import io

import pytest
from django.core.mail import EmailMessage
from django.core.management import CommandError, call_command
from django.db import connection

import mailroom
from mailroom import signals, suppression
from mailroom.models import Attempt, Message, Status, Suppression, SuppressionSource
from tests.support.fake_esp import postmark_inactive_recipients

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _queueing(queue_to_smtp):
    return queue_to_smtp


def queue(*recipients: str, cc: tuple[str, ...] = ()) -> Message:
    return mailroom.enqueue(
        EmailMessage("S", "B", "app@example.com", list(recipients), cc=list(cc))
    )


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("mailroom", *args, stdout=out)
    return out.getvalue()


# --- The list itself -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("User@Example.COM", "user@example.com"),
        ("Some One <Some.One@Example.com>", "some.one@example.com"),
        ("x@Exämple.com", "x@xn--exmple-cua.com"),
    ],
)
def test_addresses_are_stored_as_lower_cased_addr_specs(given: str, stored: str) -> None:
    assert suppression.suppress([given], reason="r") == [stored]
    assert Suppression.objects.get().address == stored
    assert suppression.suppressed([given]) == {given: "r"}


def test_an_address_with_a_trailing_newline_is_never_stored_with_it() -> None:
    # Stored with it, it would match no recipient: a suppression that suppresses nothing.
    try:
        added = suppression.suppress(["Bob@Example.com\n"], reason="r")
    except ValueError:  # Django 6 refuses it as no address
        assert not Suppression.objects.exists()
        return
    assert added == ["bob@example.com"]
    assert suppression.suppressed(["bob@example.com"]) == {"bob@example.com": "r"}


def test_something_that_is_no_address_is_refused_before_anything_is_written() -> None:
    with pytest.raises(ValueError):
        suppression.suppress(["ok@example.com", "not an address"], reason="r")
    assert not Suppression.objects.exists()


def test_suppressed_is_one_query_for_any_number_of_addresses(django_assert_num_queries) -> None:
    suppression.suppress(["a@example.com", "b@example.com"], reason="bounced")
    addresses = [f"r{i}@example.com" for i in range(500)] + ["A@example.com", "b@example.com"]
    with django_assert_num_queries(1):
        found = suppression.suppressed(addresses)
    assert found == {"A@example.com": "bounced", "b@example.com": "bounced"}


def test_a_manual_suppression_replaces_the_reason_an_automatic_one_keeps_the_first() -> None:
    suppression.suppress(["a@example.com"], reason="550 5.1.1", source=SuppressionSource.AUTO)
    assert suppression.suppress(["a@example.com"], reason="again", source="auto") == []
    assert Suppression.objects.get().reason == "550 5.1.1"
    suppression.suppress(["a@example.com"], reason="asked to stop")
    entry = Suppression.objects.get()
    assert (entry.reason, entry.source) == ("asked to stop", SuppressionSource.MANUAL)


def test_unsuppress_takes_addresses_off_the_list() -> None:
    suppression.suppress(["a@example.com", "b@example.com"], reason="r")
    assert suppression.unsuppress(["A@example.com", "nobody@example.com"]) == 1
    assert list(Suppression.objects.values_list("address", flat=True)) == ["b@example.com"]


# --- At enqueue ----------------------------------------------------------------------------


def test_a_suppressed_recipient_is_left_out_of_the_envelope_with_the_reason(
    smtp_server, run_send
) -> None:
    suppression.suppress(["gone@example.com"], reason="550 5.1.1 No such user")
    row = queue("ok@example.com", "Gone@example.com")
    assert row.status == Status.QUEUED
    assert row.pending_recipients == ["ok@example.com"]
    assert row.refused_recipients == {"Gone@example.com": "suppressed: 550 5.1.1 No such user"}
    run_send()
    row.refresh_from_db()
    assert row.status == Status.SENT
    [received] = smtp_server.messages
    assert received.rcpt_tos == ("ok@example.com",)
    # Only the envelope changes: the To header is the one the sender wrote.
    assert b"Gone@example.com" in received.data
    assert "suppressed" in row.reason


def test_a_message_with_every_recipient_suppressed_is_stored_failed(smtp_server, run_send) -> None:
    suppression.suppress(["a@example.com", "b@example.com"], reason="complained")
    failed = []
    signals.message_failed.connect(
        lambda sender, **kw: failed.append(kw), sender=Message, weak=False, dispatch_uid="t"
    )
    try:
        row = queue("a@example.com", cc=("b@example.com",))
    finally:
        signals.message_failed.disconnect(sender=Message, dispatch_uid="t")
    assert row.pk is not None
    row.refresh_from_db()
    assert row.status == Status.FAILED
    assert row.reason == (
        "all recipients are suppressed: a@example.com (complained); b@example.com (complained)"
    )
    assert [(f["message"].pk, f["attempt"]) for f in failed] == [(row.pk, None)]
    run_send()
    assert smtp_server.count == 0


def test_one_lookup_per_enqueue_call_whatever_the_number_of_messages(
    django_assert_num_queries,
) -> None:
    suppression.suppress(["r3@example.com"], reason="r")
    messages = [EmailMessage("S", "B", "a@example.com", [f"r{i}@example.com"]) for i in range(20)]
    # Is the list empty? (it is not), the lookup of all 20 recipients, the insert of the
    # messages and of their contents (on PostgreSQL the ids taken from the sequence first,
    # then a COPY each).
    with django_assert_num_queries(5 if connection.vendor == "postgresql" else 4):
        rows = mailroom.enqueue_many(messages)
    assert [r.status for r in rows].count(Status.FAILED) == 1


def test_the_generic_delivery_path_leaves_the_suppressed_out(
    fake_esp, mailroom_settings, run_send
) -> None:
    mailroom_settings(
        BACKENDS={
            "default": {
                "BACKEND": "anymail.backends.postmark.EmailBackend",
                "OPTIONS": {"server_token": "t", "api_url": fake_esp.url, "timeout": 3},
            }
        }
    )
    suppression.suppress(["b@example.com"], reason="r")
    row = queue("a@example.com", "b@example.com")
    run_send()
    [request] = fake_esp.requests
    assert list(request.recipients) == ["a@example.com"]
    row.refresh_from_db()
    assert row.status == Status.SENT


# --- At delivery (drop_suppressed, called by the worker) ------------------------------------


def test_drop_suppressed_reports_per_row_what_is_dropped_and_what_is_left(
    django_assert_num_queries,
) -> None:
    rows = [
        queue("a@example.com", "b@example.com"),
        queue("c@example.com"),
        queue("d@example.com"),
    ]
    suppression.suppress(["b@example.com", "c@example.com"], reason="bounced")
    with django_assert_num_queries(1):
        drops = suppression.drop_suppressed(rows)
    assert set(drops) == {rows[0].pk, rows[1].pk}
    first, second = drops[rows[0].pk], drops[rows[1].pk]
    assert (first.pending, first.nothing_left) == (["a@example.com"], False)
    assert first.refused == {"b@example.com": "suppressed: bounced"}
    assert second.nothing_left
    assert second.reason == "all recipients are suppressed: c@example.com (bounced)"
    assert rows[0].pending_recipients is None, "the rows themselves are not changed"


def test_drop_suppressed_looks_only_at_recipients_still_pending() -> None:
    row = queue("a@example.com", "b@example.com")
    row.pending_recipients = ["b@example.com"]
    row.refused_recipients = {"x@example.com": "550 earlier"}
    suppression.suppress(["a@example.com", "b@example.com"], reason="r")
    drop = suppression.drop_suppressed([row])[row.pk]
    assert drop.dropped == {"b@example.com": "r"}
    assert drop.refused == {"x@example.com": "550 earlier", "b@example.com": "suppressed: r"}
    assert drop.nothing_left


def test_drop_suppressed_with_nothing_suppressed_changes_nothing() -> None:
    assert suppression.drop_suppressed([queue("a@example.com")]) == {}


# --- Automatic suppression -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "suppressed"),
    [
        ("550 5.1.1 No such user", True),
        ("550 5.1.2 Bad destination system", True),
        ("553 5.1.3 Bad address syntax", True),
        ("556 5.1.10 Null MX", True),
        ("550 5.7.1 Rejected by policy", False),
        ("552 5.2.2 Mailbox full", False),
        ("550 No such user here", False),
    ],
)
def test_auto_suppress_takes_only_bad_address_refusals(
    reply, suppressed, queue_to_smtp, mailroom_settings, smtp_server, run_send
) -> None:
    mailroom_settings(BACKENDS=queue_to_smtp_backends(smtp_server), AUTO_SUPPRESS=True)
    smtp_server.script.rcpt["gone@example.com"] = reply
    queue("ok@example.com", "gone@example.com")
    run_send()
    entries = list(Suppression.objects.values_list("address", "source", "reason"))
    assert entries == ([("gone@example.com", "auto", reply)] if suppressed else [])


def test_auto_suppress_is_off_by_default(smtp_server, run_send) -> None:
    smtp_server.script.rcpt["gone@example.com"] = "550 5.1.1 No such user"
    queue("gone@example.com")
    run_send()
    assert Attempt.objects.get().recipients["gone@example.com"]["state"] == "failed"
    assert not Suppression.objects.exists()


def test_auto_suppressed_recipient_is_left_out_of_the_next_message(
    mailroom_settings, smtp_server, run_send
) -> None:
    mailroom_settings(BACKENDS=queue_to_smtp_backends(smtp_server), AUTO_SUPPRESS=True)
    smtp_server.script.rcpt["gone@example.com"] = "550 5.1.1 No such user"
    first = queue("gone@example.com")
    run_send()
    first.refresh_from_db()
    assert first.status == Status.FAILED
    second = queue("gone@example.com")
    assert second.status == Status.FAILED
    assert second.reason.startswith("all recipients are suppressed: gone@example.com (550 5.1.1")


def test_auto_suppress_takes_an_esp_inactive_recipient(
    fake_esp, mailroom_settings, run_send
) -> None:
    mailroom_settings(
        BACKENDS={
            "default": {
                "BACKEND": "anymail.backends.postmark.EmailBackend",
                "OPTIONS": {"server_token": "t", "api_url": fake_esp.url, "timeout": 3},
            }
        },
        AUTO_SUPPRESS=True,
    )
    fake_esp.for_recipient(
        "inactive@example.com", 422, postmark_inactive_recipients("inactive@example.com")
    )
    queue("inactive@example.com")
    run_send()
    entry = Suppression.objects.get()
    assert (entry.address, entry.source) == ("inactive@example.com", "auto")
    assert entry.reason.startswith("ESP status: ")


def queue_to_smtp_backends(server) -> dict[str, object]:
    from tests.conftest import SMTP_BACKEND, smtp_options

    return {"default": {"BACKEND": SMTP_BACKEND, "OPTIONS": smtp_options(server)}}


# --- Commands ------------------------------------------------------------------------------


def test_suppress_and_unsuppress_commands() -> None:
    out = run("suppress", "A@example.com", "b@example.com", "--reason", "asked to stop")
    assert "2 address(es) suppressed: asked to stop" in out
    assert suppression.suppressed(["a@example.com"]) == {"a@example.com": "asked to stop"}
    assert "1 already suppressed" in run("suppress", "a@example.com")
    assert "2 address(es) taken off" in run("unsuppress", "a@example.com", "b@example.com")
    assert not Suppression.objects.exists()


def test_suppress_command_refuses_what_is_no_address() -> None:
    with pytest.raises(CommandError, match="mailroom suppress"):
        run("suppress", "nonsense")


def test_a_recipient_suppressed_after_enqueue_is_dropped_at_delivery(
    queue_to_smtp, run_send
) -> None:
    both = queue("keep@example.com", "gone@example.com")
    only = queue("gone@example.com")
    suppression.suppress(["gone@example.com"], reason="hard bounce", source="manual")
    run_send()
    both.refresh_from_db()
    only.refresh_from_db()
    assert both.status == Status.SENT
    assert [r for m in queue_to_smtp.messages for r in m.rcpt_tos] == ["keep@example.com"]
    assert "gone@example.com" in both.refused_recipients
    assert only.status == Status.FAILED
    assert "suppressed" in only.reason


def test_an_empty_list_costs_enqueue_no_lookup_for_a_while(django_assert_num_queries) -> None:
    message = EmailMessage("S", "B", "a@example.com", ["x@example.com"])
    mailroom.enqueue(message)  # finds the list empty
    # The insert alone: on PostgreSQL one statement for the message and its content.
    with django_assert_num_queries(1 if connection.vendor == "postgresql" else 2):
        mailroom.enqueue(message)
    suppression.suppress(["x@example.com"], reason="r")
    assert mailroom.enqueue(message).status == Status.FAILED
