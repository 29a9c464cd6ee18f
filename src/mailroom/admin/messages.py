"""The message list and message page: read-only, with the operator's actions.

The list is built for a table of millions of rows: no per-row query, no full count (see
:mod:`.pagination`), filters whose choices cost nothing, sorting only on indexed columns, and the
stored content left in the database. Nothing stored can be edited: the page is a view, and every
change goes through :mod:`mailroom.operations`, as the ``mailroom`` command's do.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, cast

from django.contrib import admin
from django.contrib.admin.views.main import SEARCH_VAR, ChangeList
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from mailroom.exceptions import UndecodableMessage
from mailroom.models import Message

from . import search
from .actions import OPERATIONS, list_action, report
from .content import read_attachment, read_content
from .filters import BackendFilter, DueFilter
from .history import history
from .pagination import EstimatedCountPaginator
from .responses import attachment_download, html_preview

if TYPE_CHECKING:
    _MessageAdminBase = admin.ModelAdmin[Message]
else:
    _MessageAdminBase = admin.ModelAdmin

_MESSAGE_ID = re.compile(r"^<[^<>\s]+@[^<>\s]+>$")
#: Columns the list never shows. (The stored message, possibly megabytes, is not in the row:
#: it is in MessageContent, which only the change page reads.)
_LIST_DEFERRED = ("pending_recipients", "refused_recipients")


class MessageChangeList(ChangeList):
    def get_queryset(
        self, request: HttpRequest, exclude_parameters: list[str | None] | None = None
    ) -> QuerySet[Any]:
        return super().get_queryset(request, exclude_parameters).defer(*_LIST_DEFERRED)

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        if (self.show_all and self.can_show_all) or not self.multi_page:
            # Django lists the whole queryset here, unbounded, and runs a search a second
            # time: take the rows that counting bounded (or already found) instead.
            self.result_list = cast("EstimatedCountPaginator", self.paginator).rows()


@admin.register(Message)
class MessageAdmin(_MessageAdminBase):
    list_display = (
        "id",
        "subject_shown",
        "recipients_shown",
        "status",
        "backend",
        "attempts",
        "created_at",
        "due_at",
        "reason_shown",
    )
    list_display_links = ("id", "subject_shown")
    list_filter = ("status", BackendFilter, "priority", "created_at", DueFilter)
    search_fields = ("recipients", "subject", "message_id")
    search_help_text = _(
        "A recipient address (or part of one), words of the subject, or a Message-ID."
    )
    ordering = ("-id",)
    #: Only columns with an index behind them: sorting a million rows by anything else is a scan.
    sortable_by = ("id", "created_at")
    list_per_page = 50
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    actions = [list_action(op) for op in OPERATIONS.values()]
    change_form_template = "admin/mailroom/message/change_form.html"

    fieldsets = (
        (None, {"fields": ("status", "subject", "from_email", "recipient_addresses", "reason")}),
        (_("Delivery"), {"fields": ("backend", "priority", "attempts", "message_id")}),
        (
            _("Times"),
            {
                "fields": (
                    "created_at",
                    "due_at",
                    "last_attempt_at",
                    "sent_at",
                    "expires_at",
                    "budget_since",
                )
            },
        ),
        (_("Lease"), {"fields": ("claimed_by", "claimed_until"), "classes": ("collapse",)}),
    )
    readonly_fields = ("recipient_addresses",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # messages are queued by the application, never typed in

    def has_delete_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False  # the queue keeps every message and its history

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        # The change permission allows the actions (checked with obj=None); a message page is
        # always a view, so that a form post can never write a whole row over a worker's update.
        if obj is not None:
            return False
        return super().has_change_permission(request)

    @admin.display(description=_("subject"))
    def subject_shown(self, obj: Message) -> str:
        return Truncator(obj.subject).chars(80) or "(no subject)"

    @admin.display(description=_("recipients"))
    def recipients_shown(self, obj: Message) -> str:
        addresses = [str(a) for a in obj.recipients] if isinstance(obj.recipients, list) else []
        if len(addresses) <= 2:
            return ", ".join(addresses)
        return f"{', '.join(addresses[:2])} and {len(addresses) - 2} more"

    @admin.display(description=_("recipients"))
    def recipient_addresses(self, obj: Message) -> str:
        return ", ".join(str(a) for a in obj.recipients) if isinstance(obj.recipients, list) else ""

    @admin.display(description=_("reason"))
    def reason_shown(self, obj: Message) -> str:
        return Truncator(obj.reason).chars(60)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return MessageChangeList

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().changelist_view(request, {"title": _("Messages"), **(extra_context or {})})

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet[Any],
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> Paginator[Any]:
        paginator = EstimatedCountPaginator(queryset, per_page, orphans, allow_empty_first_page)
        paginator.remember_rows = bool(request.GET.get(SEARCH_VAR, "").strip())
        return paginator

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Message], bool]:
        """One phrase, matched as part of any recipient or of the subject, or a whole Message-ID.

        No ordinary index serves a substring search: on PostgreSQL a trigram index on the
        contents makes it fast, elsewhere the subject and the recipients' JSON text are read
        (see :mod:`.search`). Neither can list a message twice. A Message-ID pasted whole, in
        its angle brackets, is looked up by its own index only.
        """
        term = search_term.strip()
        if not term:
            return queryset, False
        if _MESSAGE_ID.match(term):
            return queryset.filter(message_id=term), False
        match = search.text_match(term, queryset.db) | Q(message_id=term)
        if not term.startswith("<"):  # Message-IDs are stored in their angle brackets
            match |= Q(message_id=f"<{term}>")
        return queryset.filter(match), False

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/preview/",
                wrap(self.html_preview_view),
                name="{}_{}_preview".format(*info),
            ),
            path(
                "<path:object_id>/attachment/<int:index>/",
                wrap(self.attachment_view),
                name="{}_{}_attachment".format(*info),
            ),
            path(
                "<path:object_id>/operation/<str:name>/",
                wrap(require_POST(self.operation_view)),
                name="{}_{}_operation".format(*info),
            ),
            *super().get_urls(),
        ]

    def _viewable(self, request: HttpRequest, object_id: str) -> Message:
        if not self.has_view_permission(request):
            raise PermissionDenied
        obj = self.get_object(request, object_id)
        if obj is None:
            raise Http404
        return obj

    def html_preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        obj = self._viewable(request, object_id)
        try:
            html = read_content(obj).html
        except UndecodableMessage:
            html = None
        if html is None:
            raise Http404
        return html_preview(html)

    def attachment_view(self, request: HttpRequest, object_id: str, index: int) -> HttpResponse:
        attachment = read_attachment(self._viewable(request, object_id), index)
        if attachment is None:
            raise Http404
        return attachment_download(attachment)

    def operation_view(self, request: HttpRequest, object_id: str, name: str) -> HttpResponse:
        if name not in OPERATIONS:
            raise Http404
        if not self.has_change_permission(request):
            raise PermissionDenied
        obj = self._viewable(request, object_id)
        report(self, request, OPERATIONS[name], [obj.pk])
        return HttpResponseRedirect(
            reverse(f"{self.admin_site.name}:mailroom_message_change", args=[obj.pk])
        )

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Message | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context.update(self._message_page(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _message_page(self, request: HttpRequest, obj: Message) -> dict[str, Any]:
        try:
            content, unreadable = read_content(obj), ""
        except UndecodableMessage as error:
            content, unreadable = None, str(error)
        operations_offered = (
            [op for op in OPERATIONS.values() if op.offered(obj)]
            if self.has_change_permission(request)
            else []
        )
        return {
            "history": history(obj),
            "content": content,
            "unreadable": unreadable,
            "operations_offered": operations_offered,
        }
