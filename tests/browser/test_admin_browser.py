"""The admin in a real browser: log in, find messages, read one safely, act on the queue."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from django.utils import timezone

from mailroom.models import BackendState, Message, Status
from tests.support.admin_rows import queue_message, record_attempt

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.django_db(transaction=True)

LIST = "/admin/mailroom/message/"
BACKENDS = "/admin/mailroom/backendstate/"


def rows(page: Page) -> list[str]:
    return page.locator("#result_list tbody tr").all_inner_texts()


def test_log_in_list_search_by_recipient_and_filter_by_status(admin_page, screenshot) -> None:
    queue_message(subject="Welcome aboard", to=["ada@example.com"])
    queue_message(subject="Password reset", to=["bob@example.org"], status=Status.FAILED)
    queue_message(subject="Your receipt", to=["cy@example.net"], status=Status.SENT)
    page = admin_page

    page.goto(LIST)
    assert len(rows(page)) == 3
    screenshot(page, "list")

    page.fill("#searchbar", "bob@example")
    page.press("#searchbar", "Enter")
    page.wait_for_url(re.compile(r"q=bob"))
    assert len(rows(page)) == 1
    assert "Password reset" in rows(page)[0]
    screenshot(page, "search-by-recipient")

    page.goto(LIST)
    page.locator("#changelist-filter a", has_text=re.compile(r"^sent$")).click()
    page.wait_for_url(re.compile(r"status__exact=sent"))
    assert len(rows(page)) == 1
    assert "Your receipt" in rows(page)[0]
    screenshot(page, "filter-by-status")


def test_a_message_page_shows_attempts_and_previews_html_without_running_it(
    admin_page, live_server, screenshot
) -> None:
    tracker = f"{live_server.url}/tracker.gif"
    html = (
        "<html><head><title>Receipt</title>"
        "<script>document.title = 'script ran';"
        "document.documentElement.setAttribute('data-ran', '1');"
        "try { parent.document.title = 'parent changed' } catch (e) {}</script>"
        "<style>p { color: #0a5; font-size: 22px }</style></head>"
        f'<body><p id="thanks">Thanks for your order!</p><img src="{tracker}" alt="pixel"></body>'
        "</html>"
    )
    row = queue_message(
        subject="Your receipt",
        to=["ada@example.com", "bob@example.org"],
        html=html,
        attachments=[("receipt.pdf", b"%PDF-1.4 fake", "application/pdf")],
    )
    record_attempt(
        row, verdict="backend_down", minutes_ago=20, reason="connection refused", charged=False
    )
    record_attempt(
        row,
        verdict="retry_recipients",
        minutes_ago=5,
        code=451,
        reason="some recipients refused for now",
        recipients={
            "ada@example.com": {"state": "sent", "code": 250},
            "bob@example.org": {"state": "retry", "code": 451, "detail": "4.7.1 greylisted"},
        },
    )
    Message.objects.filter(pk=row.pk).update(pending_recipients=["bob@example.org"])
    page = admin_page
    blocked: dict[str, str | None] = {}
    page.on("requestfailed", lambda request: blocked.update({request.url: request.failure}))
    answered: list[str] = []
    page.on("response", lambda response: answered.append(response.url))

    page.goto(f"{LIST}{row.pk}/change/")
    attempts = page.locator("#mailroom-attempts tbody tr.mailroom-attempt")
    assert attempts.count() == 2
    assert "backend_down" in attempts.nth(0).inner_text()
    assert "retry_recipients" in attempts.nth(1).inner_text()
    assert "4.7.1 greylisted" in page.locator("#mailroom-attempts").inner_text()
    recipients = page.locator("#mailroom-recipients").inner_text()
    assert re.search(r"ada@example.com\s+accepted", recipients)
    assert re.search(r"bob@example.org\s+pending", recipients)

    frame_element = page.locator("#mailroom-html-body")
    assert frame_element.get_attribute("sandbox") == ""
    body = page.frame_locator("#mailroom-html-body").locator("#thanks")
    body.wait_for()
    assert body.inner_text() == "Thanks for your order!"
    # Inline styles apply; the script did not run, neither in the frame nor on the page.
    assert body.evaluate("p => getComputedStyle(p).fontSize") == "22px"
    assert body.evaluate("p => p.ownerDocument.documentElement.getAttribute('data-ran')") is None
    assert body.evaluate("p => p.ownerDocument.title") == "Receipt"
    assert "parent changed" not in page.title()
    assert tracker not in answered, "the remote image must not load"
    assert blocked.get(tracker) == "csp", "Chromium blocks it by the preview's own policy"
    assert page.locator("#mailroom-attachments a", has_text="receipt.pdf").count() == 1
    screenshot(page, "message-page")
    # Chromium leaves a sandboxed frame blank in full-page captures: take the viewport.
    frame_element.scroll_into_view_if_needed()
    screenshot(page, "html-preview", full_page=False)


def test_cancel_a_queued_message_from_the_list(admin_page, screenshot) -> None:
    queued = queue_message(subject="Newsletter", to=["ada@example.com"])
    page = admin_page

    page.goto(LIST)
    page.check(f"input[name=_selected_action][value='{queued.pk}']")
    page.select_option("select[name=action]", "cancel")
    screenshot(page, "before-cancel")
    page.click("button[name=index]")
    page.wait_for_selector(".messagelist")
    assert "1 message cancelled." in page.locator(".messagelist").inner_text()
    screenshot(page, "after-cancel")
    queued.refresh_from_db()
    assert queued.status == Status.CANCELLED


def test_the_backends_page_shows_a_pause_and_resumes_the_backend(admin_page, screenshot) -> None:
    BackendState.objects.create(
        alias="default",
        paused_until=timezone.now() + timedelta(minutes=10),
        verdict="backend_down",
        reason="connection refused by smtp.example.com:587",
        failures=4,
    )
    page = admin_page

    page.goto(BACKENDS)
    listing = page.locator("#result_list").inner_text()
    assert "connection refused by smtp.example.com:587" in listing
    assert "paused" in listing
    screenshot(page, "paused")

    page.check("input[name=_selected_action][value='default']")
    page.select_option("select[name=action]", "resume")
    page.click("button[name=index]")
    page.wait_for_selector(".messagelist")
    assert "1 backend resumed: default." in page.locator(".messagelist").inner_text()
    assert "active" in page.locator("#result_list").inner_text()
    screenshot(page, "resumed")
    assert BackendState.objects.get(alias="default").paused_until is None
