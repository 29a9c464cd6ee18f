"""What an operator can do to messages from the admin, each written once in mailroom.operations.

Each :class:`Operation` is offered twice: as a list action over the selected messages, and as a
button on the message page where it applies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from mailroom import operations
from mailroom.models import Message, Status

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise

#: Ids per UPDATE when an action runs on many messages (SQLite caps a statement's parameters).
_IDS_PER_UPDATE = 500


@dataclass(frozen=True, kw_only=True)
class Operation:
    """One thing an operator can do to messages: the list action and the message page button."""

    name: str
    #: The list action's description, and the shorter button on the message page.
    label: _StrOrPromise
    button: _StrOrPromise
    #: Whether the message page offers it for this message (only where it would do something).
    offered: Callable[[Message], bool]
    run: Callable[[list[int]], int]
    done: Callable[[int], str]


OPERATIONS = {
    op.name: op
    for op in [
        Operation(
            name="retry_now",
            label=_("Retry now (make waiting messages due)"),
            button=_("Retry now"),
            offered=lambda m: m.status == Status.QUEUED and m.due_at > timezone.now(),
            run=lambda ids: operations.retry_deferred(ids=ids),
            done=lambda n: (
                ngettext("%d waiting message is due now.", "%d waiting messages are due now.", n)
                % n
            ),
        ),
        Operation(
            name="cancel",
            label=_("Cancel (queued messages only)"),
            button=_("Cancel this message"),
            offered=lambda m: m.status == Status.QUEUED,
            run=lambda ids: operations.cancel(ids=ids),
            done=lambda n: ngettext("%d message cancelled.", "%d messages cancelled.", n) % n,
        ),
        Operation(
            name="requeue_failed",
            label=_("Put failed messages back in the queue"),
            button=_("Put back in the queue"),
            offered=lambda m: m.status == Status.FAILED,
            run=lambda ids: operations.retry_failed(ids=ids),
            done=lambda n: (
                ngettext(
                    "%d failed message is back in the queue.",
                    "%d failed messages are back in the queue.",
                    n,
                )
                % n
            ),
        ),
    ]
}


def _run(operation: Operation, ids: list[int]) -> int:
    return sum(
        operation.run(ids[start : start + _IDS_PER_UPDATE])
        for start in range(0, len(ids), _IDS_PER_UPDATE)
    )


def report(
    admin_: admin.ModelAdmin[Any], request: HttpRequest, op: Operation, ids: list[int]
) -> None:
    """Run ``op`` on ``ids`` and tell the operator what changed and what was left alone."""
    changed = _run(op, ids)
    admin_.message_user(request, op.done(changed), messages.SUCCESS)
    if changed < len(ids):
        skipped = len(ids) - changed
        admin_.message_user(
            request,
            ngettext(
                "%d selected message was left as it is: the action does not apply to it now.",
                "%d selected messages were left as they are: the action does not apply to them "
                "now.",
                skipped,
            )
            % skipped,
            messages.WARNING,
        )


def list_action(op: Operation) -> Callable[..., None]:
    def action(
        admin_: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[Any]
    ) -> None:
        report(admin_, request, op, list(queryset.order_by().values_list("pk", flat=True)))

    action.__name__ = op.name
    return admin.action(permissions=["change"], description=op.label)(action)
