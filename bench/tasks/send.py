"""Send throughput: each configuration's sending call, timed alone, in a fresh process.

``prepare_*`` tasks fill an app's queue (not timed, in a process of their own); ``*_send``
tasks time the app's normal sending call and then check, outside the timing, that the app's
own tables say every message was sent. The parent checks the sink's count.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import smtplib
import tempfile
import time
from typing import Any

from django.conf import settings
from django.core.mail import get_connection

from bench.tasks import cpu_seconds, messages, peak_rss_mb, task
from bench.tasks.common import flush_tables

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


_cpu_at_start = 0.0


def _start() -> float:
    """Start the clock (wall and CPU); return ``time.perf_counter()``."""
    global _cpu_at_start
    _cpu_at_start = cpu_seconds()
    return time.perf_counter()


def _result(seconds: float, sent: int, **extra: Any) -> dict[str, Any]:
    # CPU from _start() to here: the call, and the few checking queries after it.
    cpu = cpu_seconds() - _cpu_at_start
    return {"seconds": seconds, "sent": sent, "rss_mb": peak_rss_mb(), "cpu_s": cpu, **extra}


def _rendered(n: int, shape: str) -> list[tuple[list[str], bytes]]:
    """Envelope recipients and the bytes mailroom would send for each message.

    ``compat.render_mime`` renders with CRLF line ends: smtplib does not fix bare LFs in bytes
    it is given, so bytes rendered with ``\\n`` would be a different (and invalid) message.
    """
    from mailroom.compat import render_mime

    return [(m.recipients(), render_mime(m)) for m in messages.build_many(n, shape)]


def _send_rendered(port: int, batch: list[tuple[list[str], bytes]]) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        for to, data in batch:
            smtp.sendmail(messages.SENDER, to, data)
    return len(batch)


def _send_pipelined(port: int, batch: list[tuple[list[str], bytes]]) -> int:
    """smtplib's connection, with MAIL, RCPT and DATA sent as one group (RFC 2920): the
    floor for a client that pipelines. The body waits for the 354, as the RFC asks; every
    reply is checked, and the run fails on any refusal (the sink refuses nothing)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo()
        if not smtp.has_extn("pipelining"):
            raise RuntimeError("the sink does not offer PIPELINING")
        for to, data in batch:
            group = f"MAIL FROM:<{messages.SENDER}>\r\n"
            group += "".join(f"RCPT TO:<{address}>\r\n" for address in to) + "DATA\r\n"
            smtp.send(group)
            replies = [smtp.getreply()[0] for _ in range(len(to) + 2)]
            if replies != [250] * (len(to) + 1) + [354]:
                raise RuntimeError(f"the sink refused a pipelined group: {replies}")
            body = re.sub(rb"(?m)^\.", b"..", data)
            smtp.send(body + (b".\r\n" if body.endswith(b"\r\n") else b"\r\n.\r\n"))
            code, reply = smtp.getreply()
            if code != 250:
                raise RuntimeError(f"the sink refused a message: {code} {reply!r}")
    return len(batch)


def _connection_worker(
    port: int,
    batch: list[tuple[list[str], bytes]],
    pipelining: bool,
    go: Any,
    done: Any,
) -> None:
    go.wait()
    sent = (_send_pipelined if pipelining else _send_rendered)(port, batch)
    done.put((sent, time.perf_counter()))


@task
def raw_smtplib(
    n: int, shape: str = "plain", connections: int = 1, pipelining: bool = False
) -> dict[str, Any]:
    """Pre-rendered bytes through ``smtplib.sendmail``: the floor any queue adds cost to.
    With ``pipelining``, through :func:`_send_pipelined` instead."""
    rendered = _rendered(n, shape)
    port = settings.EMAIL_PORT
    if connections == 1:
        send = _send_pipelined if pipelining else _send_rendered
        t0 = _start()
        sent = send(port, rendered)
        return _result(time.perf_counter() - t0, sent)
    # Processes, not threads: two connections in parallel without sharing a GIL. They are
    # forked with their share already rendered and start on one signal; the time runs from
    # that signal to the last one's end (CLOCK_MONOTONIC is system-wide).
    ctx = multiprocessing.get_context("fork")
    go, done = ctx.Event(), ctx.Queue()
    workers = [
        ctx.Process(
            target=_connection_worker,
            args=(port, rendered[k::connections], pipelining, go, done),
        )
        for k in range(connections)
    ]
    for worker in workers:
        worker.start()
    t0 = _start()
    go.set()
    results = [done.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    return _result(max(end for _, end in results) - t0, sum(sent for sent, _ in results))


@task
def django_smtp(n: int, shape: str = "plain") -> dict[str, Any]:
    """Django's SMTP backend, no queue: ``send_messages`` over one open connection."""
    batch = messages.build_many(n, shape)
    backend = get_connection(SMTP_BACKEND, host="127.0.0.1", port=settings.EMAIL_PORT)
    t0 = _start()
    with backend:
        sent = backend.send_messages(batch)
    return _result(time.perf_counter() - t0, sent or 0)


# -- mailroom ------------------------------------------------------------------------------------


@task
def prepare_mailroom(n: int, shape: str = "plain") -> dict[str, Any]:
    from mailroom import enqueue_many
    from mailroom.models import Message

    flush_tables()
    for start in range(0, n, 1000):
        enqueue_many(messages.build(i, shape) for i in range(start, min(n, start + 1000)))
    return {"queued": Message.objects.count()}


def _mailroom_sent() -> int:
    from mailroom.models import Message

    return Message.objects.filter(status="sent").count()


@task
def mailroom_send(n: int) -> dict[str, Any]:
    """``manage.py mailroom send``: one process, one connection per batch."""
    from mailroom.worker import Engine

    t0 = _start()
    stats = Engine().send_due()
    seconds = time.perf_counter() - t0
    return _result(seconds, stats.sent, db_sent=_mailroom_sent(), expected=n)


@task
def mailroom_worker(n: int, concurrency: int, processes: int = 1) -> dict[str, Any]:
    """``manage.py mailroom worker --processes P --concurrency N --burst``: exits once the
    queue is empty. The time includes forking the worker processes."""
    from django.core.management import call_command

    t0 = _start()
    call_command(
        "mailroom",
        "worker",
        "--processes",
        str(processes),
        "--concurrency",
        str(concurrency),
        "--burst",
        verbosity=0,
    )
    seconds = time.perf_counter() - t0
    sent = _mailroom_sent()
    return _result(seconds, sent, db_sent=sent, expected=n)


# -- django-mailer -------------------------------------------------------------------------------


@task
def prepare_mailer(n: int, shape: str = "plain") -> dict[str, Any]:
    from mailer.backend import DbBackend
    from mailer.models import Message

    flush_tables()
    DbBackend().send_messages(messages.build_many(n, shape))
    return {"queued": Message.objects.count()}


@task
def mailer_send(n: int) -> dict[str, Any]:
    """What ``manage.py send_mail`` runs: one ``send_all()`` pass."""
    from mailer.engine import send_all
    from mailer.models import RESULT_SUCCESS, Message, MessageLog

    t0 = _start()
    send_all()
    seconds = time.perf_counter() - t0
    sent = MessageLog.objects.filter(result=RESULT_SUCCESS).count()
    left = Message.objects.count()
    return _result(seconds, sent, db_sent=sent if left == 0 else -left, expected=n)


# -- django-post_office --------------------------------------------------------------------------


@task
def prepare_post_office(n: int, shape: str = "plain") -> dict[str, Any]:
    from post_office import mail
    from post_office.models import Email

    flush_tables()
    for start in range(0, n, 1000):
        mail.send_many(
            [
                {
                    "sender": messages.SENDER,
                    "recipients": messages.recipients(i, shape),
                    "subject": messages.subject(i),
                    "message": messages.body(shape),
                }
                for i in range(start, min(n, start + 1000))
            ]
        )
    return {"queued": Email.objects.count()}


@task
def post_office_send(n: int, processes: int = 1) -> dict[str, Any]:
    """What ``manage.py send_queued_mail --processes P`` runs: batches until the queue is
    empty, each batch sent by ``THREADS_PER_PROCESS`` threads."""
    from post_office.mail import send_queued_mail_until_done
    from post_office.models import STATUS, Email

    lockfile = os.path.join(tempfile.gettempdir(), "mailroom-bench-post-office")
    t0 = _start()
    send_queued_mail_until_done(lockfile=lockfile, processes=processes)
    seconds = time.perf_counter() - t0
    sent = Email.objects.filter(status=STATUS.sent).count()
    return _result(seconds, sent, db_sent=sent, expected=n)
