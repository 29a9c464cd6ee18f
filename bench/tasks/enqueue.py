"""Enqueue rate: each app's public API, one message per call and transaction, and in bulk.

Building the message is part of the call: mailer's ``send_mail`` and post_office's ``send``
take strings and build their own rows, so mailroom's ``enqueue`` is timed with the
``EmailMessage`` construction an application would do. The queue is emptied first (not timed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.apps import apps
from django.core.mail import EmailMessage
from django.db import transaction

from bench.tasks import installed_app, messages, peak_rss_mb, task
from bench.tasks.common import flush_tables


def _one(i: int) -> tuple[str, str, str, list[str]]:
    return messages.subject(i), messages.BODY, messages.SENDER, messages.recipients(i, "plain")


def _enqueue_mailroom(i: int) -> None:
    from mailroom import enqueue

    subject, body, sender, to = _one(i)
    enqueue(EmailMessage(subject, body, sender, to))


def _enqueue_mailer(i: int) -> None:
    from mailer import send_mail

    send_mail(*_one(i))


def _enqueue_post_office(i: int) -> None:
    from post_office import mail

    subject, body, sender, to = _one(i)
    mail.send(recipients=to, sender=sender, subject=subject, message=body)


ONE_PER_TRANSACTION: dict[str, Callable[[int], None]] = {
    "mailroom": _enqueue_mailroom,
    "mailer": _enqueue_mailer,
    "post_office": _enqueue_post_office,
}


def _bulk_mailroom_enqueue_many(n: int) -> None:
    from mailroom import enqueue_many

    enqueue_many(EmailMessage(*_one(i)) for i in range(n))


def _bulk_send_mass_mail(n: int) -> None:
    # Django's own bulk API, through the app's EMAIL_BACKEND (mailroom's and mailer's both
    # bulk-insert in send_messages).
    from django.core.mail import send_mass_mail

    send_mass_mail([_one(i) for i in range(n)])


def _bulk_post_office_send_many(n: int) -> None:
    from post_office import mail

    mail.send_many(
        [
            {"recipients": to, "sender": sender, "subject": subject, "message": body}
            for subject, body, sender, to in map(_one, range(n))
        ]
    )


BULK: dict[str, Callable[[int], None]] = {
    "enqueue_many": _bulk_mailroom_enqueue_many,
    "send_mass_mail": _bulk_send_mass_mail,
    "send_many": _bulk_post_office_send_many,
}


QUEUE_MODEL = {
    "mailroom": "mailroom.Message",
    "mailer": "mailer.Message",
    "post_office": "post_office.Email",
}


def _queued() -> int:
    return int(apps.get_model(QUEUE_MODEL[installed_app()])._default_manager.count())


@task
def one_per_transaction(n: int) -> dict[str, Any]:
    flush_tables()
    call = ONE_PER_TRANSACTION[installed_app()]
    t0 = time.perf_counter()
    for i in range(n):
        with transaction.atomic():
            call(i)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "queued": _queued(), "expected": n, "rss_mb": peak_rss_mb()}


@task
def bulk(api: str, n: int) -> dict[str, Any]:
    """All ``n`` messages in one call, in one transaction."""
    flush_tables()
    t0 = time.perf_counter()
    with transaction.atomic():
        BULK[api](n)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "queued": _queued(), "expected": n, "rss_mb": peak_rss_mb()}
