"""The delivery backends page: each backend's state (paused until when, and why) and resuming."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.timesince import timeuntil
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from mailroom import operations
from mailroom.models import BackendState

if TYPE_CHECKING:
    _BackendStateAdminBase = admin.ModelAdmin[BackendState]
else:
    _BackendStateAdminBase = admin.ModelAdmin


class PausedFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("paused", _("Paused")), ("active", _("Active"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        if self.value() == "paused":
            return queryset.filter(paused_until__gt=now)
        if self.value() == "active":
            return queryset.exclude(paused_until__gt=now)
        return queryset


@admin.register(BackendState)
class BackendStateAdmin(_BackendStateAdminBase):
    list_display = ("alias", "state", "paused_until", "verdict", "reason", "failures", "updated_at")
    list_filter = (PausedFilter,)
    show_facets = admin.ShowFacets.NEVER
    ordering = ("alias",)
    actions = ["resume"]
    readonly_fields = ("state",)
    fields = ("alias", "state", "paused_until", "verdict", "reason", "failures", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a backend's state is written by the workers

    def has_delete_permission(self, request: HttpRequest, obj: BackendState | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: BackendState | None = None) -> bool:
        # As for messages: the change permission allows "resume"; the page itself is a view.
        if obj is not None:
            return False
        return super().has_change_permission(request)

    @admin.display(description=_("state"))
    def state(self, obj: BackendState) -> str:
        now = timezone.now()
        if obj.paused_until is None or not obj.is_paused(now):
            return str(_("active"))
        return _("paused, %(left)s left") % {"left": timeuntil(obj.paused_until, now)}

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        title = _("Delivery backends")
        return super().changelist_view(request, {"title": title, **(extra_context or {})})

    @admin.action(permissions=["change"], description=_("Resume the selected backends now"))
    def resume(self, request: HttpRequest, queryset: QuerySet[BackendState]) -> None:
        resumed = operations.resume_backends(list(queryset.values_list("alias", flat=True)))
        self.message_user(
            request,
            ngettext(
                "%(n)d backend resumed: %(names)s.",
                "%(n)d backends resumed: %(names)s.",
                len(resumed),
            )
            % {"n": len(resumed), "names": ", ".join(resumed) or "-"},
            messages.SUCCESS,
        )
