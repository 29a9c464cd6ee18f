"""The admin: who sees and acts, what the list and the message page show, and at what cost."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from mailroom import operations
from mailroom.admin import pagination
from mailroom.admin.history import ATTEMPTS_SHOWN
from mailroom.admin.responses import ATTACHMENT_POLICY, PREVIEW_POLICY
from mailroom.models import Attempt, BackendState, Message, MessageContent, Priority, Status
from tests.support.admin_rows import queue_message, record_attempt

pytestmark = pytest.mark.django_db

LIST = reverse("admin:mailroom_message_changelist")
BACKENDS = reverse("admin:mailroom_backendstate_changelist")

HTML = (
    "<html><head><title>Receipt</title>"
    "<script>document.title = 'script ran'</script></head>"
    '<body><p>Thanks!</p><img src="https://tracker.example/pixel.gif"></body></html>'
)


def page(pk: int) -> str:
    return reverse("admin:mailroom_message_change", args=[pk])


def preview(pk: int) -> str:
    return reverse("admin:mailroom_message_preview", args=[pk])


def attachment(pk: int, index: int) -> str:
    return reverse("admin:mailroom_message_attachment", args=[pk, index])


def operation(pk: int, name: str) -> str:
    return reverse("admin:mailroom_message_operation", args=[pk, name])


@pytest.fixture
def staff(db: None) -> Callable[..., Client]:
    """A logged-in client for a staff user holding exactly the given permission codenames."""

    def login(*codenames: str, is_staff: bool = True) -> Client:
        user = User.objects.create_user(f"user{User.objects.count()}", is_staff=is_staff)
        user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
        client = Client()
        client.force_login(user)
        return client

    return login


@pytest.fixture
def viewer(staff: Callable[..., Client]) -> Client:
    return staff("view_message", "view_backendstate")


@pytest.fixture
def operator(staff: Callable[..., Client]) -> Client:
    return staff("view_message", "change_message", "view_backendstate", "change_backendstate")


def act(client: Client, action: str, *rows: Message, url: str = LIST) -> Any:
    return client.post(
        url, {"action": action, "_selected_action": [r.pk for r in rows]}, follow=True
    )


def shown_ids(response: Any) -> set[int]:
    return {row.pk for row in response.context["cl"].result_list}


# --- who sees and acts ------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_the_login_page(client: Client) -> None:
    row = queue_message(html=HTML)
    for url in (LIST, page(row.pk), preview(row.pk), attachment(row.pk, 0), BACKENDS):
        response = client.get(url)
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]


def test_a_user_who_is_not_staff_is_sent_to_the_login_page(staff) -> None:
    client = staff("view_message", is_staff=False)
    assert client.get(LIST).status_code == 302


def test_staff_without_the_model_permissions_see_nothing(staff) -> None:
    client = staff()
    row = queue_message(html=HTML, attachments=[("a.txt", "x", "text/plain")])
    for url in (LIST, page(row.pk), preview(row.pk), attachment(row.pk, 0), BACKENDS):
        assert client.get(url).status_code == 403, url
    assert client.post(operation(row.pk, "cancel")).status_code == 403


def test_the_view_permission_shows_everything_but_offers_no_action(viewer) -> None:
    row = queue_message(html=HTML, attachments=[("a.txt", "x", "text/plain")])
    listing = viewer.get(LIST)
    assert listing.status_code == 200
    assert 'name="action"' not in listing.text
    message_page = viewer.get(page(row.pk))
    assert message_page.status_code == 200
    assert "mailroom-operations" not in message_page.text
    assert viewer.get(preview(row.pk)).status_code == 200
    assert viewer.get(attachment(row.pk, 0)).status_code == 200


def test_the_view_permission_cannot_run_an_action(viewer) -> None:
    row = queue_message()
    act(viewer, "cancel", row)
    assert viewer.post(operation(row.pk, "cancel")).status_code == 403
    row.refresh_from_db()
    assert row.status == Status.QUEUED


def test_the_view_permission_on_backends_cannot_resume_them(viewer) -> None:
    paused = BackendState.objects.create(
        alias="default", paused_until=timezone.now() + timedelta(minutes=5), reason="down"
    )
    response = viewer.post(BACKENDS, {"action": "resume", "_selected_action": [paused.pk]})
    assert response.status_code in (200, 302)
    paused.refresh_from_db()
    assert paused.paused_until is not None


# --- nothing stored is editable ---------------------------------------------------------------


def test_the_message_page_is_a_view_without_a_form_field_or_a_save_button(operator) -> None:
    row = queue_message()
    text = operator.get(page(row.pk)).text
    assert 'name="_save"' not in text
    assert not re.search(r'<(input|textarea|select)[^>]+name="(subject|status|payload)"', text)


def test_posting_to_the_message_page_changes_nothing(operator) -> None:
    row = queue_message(subject="Before")
    response = operator.post(page(row.pk), {"subject": "After", "status": Status.SENT})
    assert response.status_code == 403
    row.refresh_from_db()
    assert (row.subject, row.status) == ("Before", Status.QUEUED)


def test_messages_and_backends_cannot_be_added_or_deleted(admin_client) -> None:
    row = queue_message()
    BackendState.objects.create(alias="default")
    assert admin_client.get(reverse("admin:mailroom_message_add")).status_code == 403
    assert admin_client.get(reverse("admin:mailroom_backendstate_add")).status_code == 403
    assert (
        admin_client.post(reverse("admin:mailroom_message_delete", args=[row.pk])).status_code
        == 403
    )
    assert "delete_selected" not in admin_client.get(LIST).text
    assert Message.objects.filter(pk=row.pk).exists()


# --- the list ---------------------------------------------------------------------------------


def test_the_list_shows_subject_recipients_status_and_backend(admin_client) -> None:
    queue_message(subject="Invoice 42", to=["ada@example.com", "bob@example.com", "cy@example.com"])
    text = admin_client.get(LIST).text
    assert "Invoice 42" in text
    assert "ada@example.com, bob@example.com and 1 more" in text
    assert "queued" in text


def _list_queries(client: Client, url: str = LIST) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return [q["sql"] for q in queries.captured_queries]


def test_the_list_costs_the_same_queries_for_5_or_50_messages(
    admin_client, django_assert_max_num_queries
) -> None:
    for i in range(5):
        queue_message(subject=f"Message {i}")
    with_five = _list_queries(admin_client)
    for i in range(45):
        queue_message(subject=f"Message {i + 5}", html=HTML)
    with django_assert_max_num_queries(len(with_five)):
        response = admin_client.get(LIST)
    assert len(response.context["cl"].result_list) == 50
    assert len(with_five) <= 8, with_five


def test_the_list_never_reads_the_messages_without_a_bound_nor_distinct_values(
    admin_client,
) -> None:
    queue_message()
    for url in (LIST, f"{LIST}?status__exact=queued&q=example"):
        for sql in _list_queries(admin_client, url):
            assert "DISTINCT" not in sql.upper(), sql
            if re.search(r'FROM ["`]mailroom_message["`]', sql):
                assert re.search(r"LIMIT \d+|[\"`]id[\"`] IN \(", sql), sql


def test_a_filtered_list_reads_its_rows_once(admin_client) -> None:
    ids = sorted((queue_message(subject="Needle").pk for _ in range(3)), reverse=True)
    queries = _list_queries(admin_client, f"{LIST}?q=needle")
    filtering = [sql for sql in queries if "needle" in sql.lower()]
    by_id = [
        sql for sql in queries if re.search(rf'["`]id["`] IN \({", ".join(map(str, ids))}\)', sql)
    ]
    # Counting reads the matching ids once; the page is then fetched by those ids alone, so
    # that a search that must scan the table (or, on PostgreSQL, its index) does it once.
    assert len(filtering) == 1
    assert re.search(r"LIMIT \d+", filtering[0])
    assert len(by_id) == 1
    assert "needle" not in by_id[0].lower()


def test_the_list_leaves_the_stored_message_in_the_database(admin_client) -> None:
    queue_message(attachments=[("big.bin", b"x" * 10_000, "application/octet-stream")])
    selects = [q for q in _list_queries(admin_client) if "mailroom_message" in q and "LIMIT" in q]
    assert selects
    for sql in selects:
        columns = {name.strip('"`') for name in re.findall(r'["`]\w+["`]', sql)}
        assert not columns & {"payload", "mime"}, sql


def test_a_filtered_list_is_counted_only_up_to_the_limit(admin_client, monkeypatch) -> None:
    monkeypatch.setattr(pagination.EstimatedCountPaginator, "count_limit", 3)
    for _ in range(5):
        queue_message()
    response = admin_client.get(f"{LIST}?status__exact=queued")
    assert response.context["cl"].result_count == 3
    assert "At least 3 messages match" in response.text


def test_a_large_table_is_sized_from_the_database_statistics(admin_client, monkeypatch) -> None:
    monkeypatch.setattr(pagination, "estimated_rows", lambda model, using: 1_000_000)
    queue_message(subject="Still listed")
    response = admin_client.get(LIST)
    assert response.context["cl"].result_count == 1_000_000
    assert "estimate" in response.text
    assert "Still listed" in response.text


def test_the_table_estimate_is_a_number_or_none() -> None:
    queue_message()
    estimate = pagination.estimated_rows(Message, "default")
    if connection.vendor in ("postgresql", "mysql"):
        assert estimate is None or estimate >= 0
    else:
        assert estimate is None


def test_search_finds_a_recipient_by_part_of_the_address(admin_client) -> None:
    ada = queue_message(to=["Ada.Lovelace@example.com"])
    queue_message(to=["bob@example.com"])
    assert shown_ids(admin_client.get(LIST, {"q": "lovelace"})) == {ada.pk}


def test_search_finds_a_subject_and_a_message_id_with_or_without_brackets(admin_client) -> None:
    invoice = queue_message(subject="Invoice 42 is ready")
    other = queue_message(subject="Welcome")
    assert shown_ids(admin_client.get(LIST, {"q": "invoice 42"})) == {invoice.pk}
    assert shown_ids(admin_client.get(LIST, {"q": other.message_id})) == {other.pk}
    assert shown_ids(admin_client.get(LIST, {"q": other.message_id.strip("<>")})) == {other.pk}


def test_a_whole_message_id_is_looked_up_by_its_index_alone(admin_client) -> None:
    row = queue_message()
    queries = _list_queries(admin_client, f"{LIST}?q={row.message_id}")
    searching = [sql for sql in queries if row.message_id in sql]
    assert searching
    for sql in searching:
        assert "LIKE" not in sql.upper(), sql


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status__exact": "failed"}, {"failed"}),
        ({"backend": "bulk"}, {"bulk"}),
        ({"priority__exact": str(Priority.HIGH.value)}, {"high"}),
        ({"due": "now"}, {"queued"}),
        ({"due": "later"}, {"waiting"}),
    ],
)
def test_the_list_filters(admin_client, query, expected) -> None:
    rows = {
        "queued": queue_message(),
        "failed": queue_message(status=Status.FAILED),
        "bulk": queue_message(status=Status.SENT, backend="bulk"),
        "high": queue_message(status=Status.SENT, priority=Priority.HIGH),
        "waiting": queue_message(due_at=timezone.now() + timedelta(days=2)),
    }
    shown = shown_ids(admin_client.get(LIST, query))
    assert shown == {rows[name].pk for name in expected}


def test_the_backend_filter_offers_configured_and_recorded_backends(admin_client) -> None:
    BackendState.objects.create(alias="ses")
    changelist = admin_client.get(LIST).context["cl"]
    (spec,) = [
        spec
        for spec in changelist.filter_specs
        if getattr(spec, "parameter_name", None) == "backend"
    ]
    assert [alias for alias, _ in spec.lookup_choices] == ["default", "ses"]


# --- actions ----------------------------------------------------------------------------------


def test_retry_now_makes_waiting_messages_due_and_leaves_the_others(operator) -> None:
    waiting = queue_message(due_at=timezone.now() + timedelta(hours=1))
    sent = queue_message(status=Status.SENT)
    response = act(operator, "retry_now", waiting, sent)
    assert "1 waiting message is due now." in response.text
    assert "1 selected message was left as it is" in response.text
    waiting.refresh_from_db()
    assert waiting.due_at <= timezone.now()


def test_cancel_cancels_queued_messages_only(operator) -> None:
    queued = queue_message()
    sending = queue_message(status=Status.SENDING, claimed_by="w", claimed_until=timezone.now())
    sent = queue_message(status=Status.SENT)
    response = act(operator, "cancel", queued, sending, sent)
    assert "1 message cancelled." in response.text
    statuses = dict(Message.objects.values_list("pk", "status"))
    assert statuses == {
        queued.pk: Status.CANCELLED,
        sending.pk: Status.SENDING,
        sent.pk: Status.SENT,
    }
    assert Message.objects.get(pk=queued.pk).reason == "cancelled by an operator"


def test_put_back_requeues_failed_messages_with_a_fresh_budget(operator) -> None:
    failed = queue_message(status=Status.FAILED, attempts=10, reason="gave up")
    act(operator, "requeue_failed", failed)
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == (Status.QUEUED, 0)


def test_an_action_on_every_message_of_a_filter_reaches_them_all(operator, monkeypatch) -> None:
    monkeypatch.setattr("mailroom.admin.actions._IDS_PER_UPDATE", 2)
    rows = [queue_message() for _ in range(5)]
    operator.post(
        f"{LIST}?status__exact=queued",
        {"action": "cancel", "select_across": "1", "_selected_action": [rows[0].pk]},
    )
    assert Message.objects.filter(status=Status.CANCELLED).count() == 5


def test_the_message_page_offers_the_operations_that_apply(operator) -> None:
    waiting = queue_message(due_at=timezone.now() + timedelta(hours=1))
    failed = queue_message(status=Status.FAILED)
    sent = queue_message(status=Status.SENT)
    waiting_page = operator.get(page(waiting.pk)).text
    assert 'name="retry_now"' in waiting_page
    assert 'name="cancel"' in waiting_page
    assert 'name="requeue_failed"' in operator.get(page(failed.pk)).text
    assert "mailroom-operations" not in operator.get(page(sent.pk)).text


def test_a_message_page_button_acts_and_comes_back_to_the_page(operator) -> None:
    row = queue_message()
    response = operator.post(operation(row.pk, "cancel"))
    assert response.status_code == 302
    assert response["Location"] == page(row.pk)
    row.refresh_from_db()
    assert row.status == Status.CANCELLED


def test_a_message_page_button_needs_post_and_a_known_operation(operator) -> None:
    row = queue_message()
    assert operator.get(operation(row.pk, "cancel")).status_code == 405
    assert operator.post(operation(row.pk, "explode")).status_code == 404
    assert operator.post(operation(987654, "cancel")).status_code == 404


def test_operations_cancel_never_touches_a_message_in_a_workers_hands() -> None:
    sending = queue_message(status=Status.SENDING)
    assert operations.cancel(ids=[sending.pk]) == 0
    sending.refresh_from_db()
    assert sending.status == Status.SENDING


# --- the message page -------------------------------------------------------------------------


def test_the_message_page_shows_every_attempt_in_time_order(admin_client) -> None:
    row = queue_message(to=["ada@example.com", "bob@example.com"])
    record_attempt(
        row, verdict="backend_down", minutes_ago=30, reason="connection refused", charged=False
    )
    record_attempt(
        row,
        verdict="retry_recipients",
        minutes_ago=10,
        code=451,
        reason="some recipients refused for now",
        recipients={
            "ada@example.com": {"state": "sent", "code": 250},
            "bob@example.com": {"state": "retry", "code": 451, "detail": "greylisted"},
        },
    )
    Message.objects.filter(pk=row.pk).update(pending_recipients=["bob@example.com"])
    response = admin_client.get(page(row.pk))
    history = response.context["history"]
    assert [line.attempt.verdict for line in history.attempts] == [
        "backend_down",
        "retry_recipients",
    ]
    text = response.text
    assert text.index("connection refused") < text.index("some recipients refused for now")
    assert "greylisted" in text
    states = {line.address: line.state for line in history.recipients}
    assert states == {"ada@example.com": "accepted", "bob@example.com": "pending"}


def test_a_failed_message_says_which_recipients_were_refused(admin_client) -> None:
    row = queue_message(
        to=["ada@example.com", "nobody@example.com"],
        status=Status.FAILED,
        pending_recipients=[],
        refused_recipients={"nobody@example.com": "550 no such user"},
    )
    history = admin_client.get(page(row.pk)).context["history"]
    states = {line.address: (line.state, line.detail) for line in history.recipients}
    assert states["nobody@example.com"] == ("refused", "550 no such user")
    assert states["ada@example.com"][0] == "accepted"


def test_the_message_page_costs_the_same_queries_for_1_or_30_attempts(
    admin_client, django_assert_max_num_queries
) -> None:
    row = queue_message(html=HTML)
    record_attempt(row)
    with CaptureQueriesContext(connection) as one:
        admin_client.get(page(row.pk))
    for i in range(29):
        record_attempt(row, minutes_ago=i)
    with django_assert_max_num_queries(len(one.captured_queries)):
        admin_client.get(page(row.pk))


def test_the_message_page_shows_only_the_latest_attempts_of_a_long_history(admin_client) -> None:
    row = queue_message()
    Attempt.objects.bulk_create(
        Attempt(
            message=row,
            started_at=timezone.now() - timedelta(minutes=i),
            duration=0,
            backend="default",
            verdict="backend_down",
        )
        for i in range(ATTEMPTS_SHOWN + 3)
    )
    history = admin_client.get(page(row.pk)).context["history"]
    assert len(history.attempts) == ATTEMPTS_SHOWN
    assert history.truncated


def test_the_message_page_shows_the_text_body_headers_and_attachments(admin_client) -> None:
    row = queue_message(
        text="Plain words <b>not bold</b>",
        html=HTML,
        attachments=[("invoice.pdf", b"%PDF-1.4", "application/pdf")],
    )
    text = admin_client.get(page(row.pk)).text
    assert "Plain words &lt;b&gt;not bold&lt;/b&gt;" in text
    assert "shop@example.com" in text
    assert f'href="{attachment(row.pk, 0)}"' in text
    assert "invoice.pdf" in text


def test_the_html_body_is_framed_in_a_sandbox_without_scripts(admin_client) -> None:
    row = queue_message(html=HTML)
    text = admin_client.get(page(row.pk)).text
    frame = re.search(r"<iframe[^>]*>", text)
    assert frame
    assert 'sandbox=""' in frame.group(0)
    assert f'src="{preview(row.pk)}"' in frame.group(0)
    assert "script ran" not in text, "the HTML body is never inlined in the admin page"


def test_the_html_preview_forbids_script_and_remote_content(admin_client) -> None:
    row = queue_message(html=HTML)
    response = admin_client.get(preview(row.pk))
    assert response.status_code == 200
    assert response.content.decode() == HTML
    assert response["Content-Type"] == "text/html; charset=utf-8"
    policy = response["Content-Security-Policy"]
    assert policy == PREVIEW_POLICY
    assert "default-src 'none'" in policy
    assert "img-src data:" in policy
    assert "style-src 'unsafe-inline'" in policy
    assert "sandbox" in policy
    assert "script-src" not in policy
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "SAMEORIGIN"


def test_a_message_whose_body_is_html_is_previewed_too(admin_client) -> None:
    from django.core.mail import EmailMessage

    import mailroom

    message = EmailMessage("S", "<p>only html</p>", "a@example.com", ["b@example.com"])
    message.content_subtype = "html"
    row = mailroom.enqueue(message)
    assert admin_client.get(preview(row.pk)).content == b"<p>only html</p>"


def test_there_is_no_preview_of_a_message_without_html(admin_client) -> None:
    row = queue_message()
    assert admin_client.get(preview(row.pk)).status_code == 404
    assert "<iframe" not in admin_client.get(page(row.pk)).text


def test_an_attachment_is_downloaded_never_rendered(admin_client) -> None:
    row = queue_message(attachments=[("page.html", "<script>alert(1)</script>", "text/html")])
    response = admin_client.get(attachment(row.pk, 0))
    assert response.status_code == 200
    assert response.content == b"<script>alert(1)</script>"
    assert response["Content-Disposition"] == 'attachment; filename="page.html"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == ATTACHMENT_POLICY


def test_an_attachment_name_cannot_escape_into_a_path_or_a_header(admin_client) -> None:
    row = queue_message(attachments=[("a.txt", b"x", "text/plain")])
    # Written straight into the row, as a tampered or foreign row could hold them.
    payload = row.content.payload
    payload["attachments"][0].update(filename="../../etc/passwd\r\nX: y", mimetype="bad\r\nX: y")
    MessageContent.objects.filter(pk=row.pk).update(payload=payload)
    response = admin_client.get(attachment(row.pk, 0))
    assert response["Content-Disposition"] == 'attachment; filename="_.._etc_passwd__X: y"'
    assert response["Content-Type"] == "application/octet-stream"
    assert "X" not in response.headers


def test_a_mimetype_with_a_trailing_newline_is_not_taken_for_one(admin_client) -> None:
    row = queue_message(attachments=[("a.txt", b"x", "text/plain")])
    payload = row.content.payload
    payload["attachments"][0]["mimetype"] = "text/plain\n"
    MessageContent.objects.filter(pk=row.pk).update(payload=payload)
    response = admin_client.get(attachment(row.pk, 0))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"


def test_an_attachment_that_does_not_exist_is_not_found(admin_client) -> None:
    row = queue_message(attachments=[("a.txt", "x", "text/plain")])
    assert admin_client.get(attachment(row.pk, 1)).status_code == 404
    assert admin_client.get(attachment(987654, 0)).status_code == 404


def test_a_message_that_cannot_be_rebuilt_still_has_a_page(admin_client) -> None:
    row = queue_message()
    MessageContent.objects.filter(pk=row.pk).update(payload={"v": 99})
    response = admin_client.get(page(row.pk))
    assert response.status_code == 200
    assert "The stored message cannot be read" in response.text
    assert admin_client.get(preview(row.pk)).status_code == 404


# --- backends ---------------------------------------------------------------------------------


def test_the_backends_page_shows_why_and_until_when_a_backend_is_paused(viewer) -> None:
    BackendState.objects.create(
        alias="default",
        paused_until=timezone.now() + timedelta(minutes=5),
        verdict="backend_down",
        reason="connection refused by 10.0.0.1:25",
        failures=3,
    )
    BackendState.objects.create(alias="bulk")
    response = viewer.get(BACKENDS)
    text = response.text
    assert "connection refused by 10.0.0.1:25" in text
    assert "paused" in text
    assert "active" in text
    assert shown_ids_backends(viewer.get(BACKENDS, {"state": "paused"})) == {"default"}


def shown_ids_backends(response: Any) -> set[str]:
    return {row.pk for row in response.context["cl"].result_list}


def test_resume_lifts_the_pause(operator) -> None:
    paused = BackendState.objects.create(
        alias="default", paused_until=timezone.now() + timedelta(minutes=5), reason="down"
    )
    response = operator.post(
        BACKENDS, {"action": "resume", "_selected_action": [paused.pk]}, follow=True
    )
    assert "1 backend resumed: default." in response.text
    paused.refresh_from_db()
    assert (paused.paused_until, paused.reason) == (None, "")
