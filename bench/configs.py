"""The configurations measured, by key. A key is what ``--only`` accepts.

Send configurations run against the same sink with the same messages; the queue-based ones
have their queue filled first by a ``prepare`` task in a process of its own (not timed).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RAW = "raw1"


def _worker_command(db: str) -> str | None:
    """None if ``manage.py mailroom worker`` exists in this checkout, else why not."""
    if importlib.util.find_spec("mailroom.cli.worker") is None:
        return "not available yet (no mailroom.cli.worker: `mailroom worker` is being written)"
    return None


def _smtp_pipelining(db: str) -> str | None:
    """None if this mailroom has the SMTP_PIPELINING setting, else why the row is not measured."""
    from mailroom import conf

    if "SMTP_PIPELINING" not in conf.DEFAULTS:
        return "not applicable (this mailroom has no SMTP_PIPELINING setting)"
    return None


def _sqlite_only(db: str) -> str | None:
    return None if db == "sqlite" else "SQLite only"


def _send_variant(
    key: str, setting: str, env: dict[str, str], unavailable: Callable[[str], str | None]
) -> SendConfig:
    """``mailroom send`` (1 process) with one setting changed through the environment."""
    return SendConfig(
        key=key,
        name=f"mailroom send (1 process), {setting}",
        app="mailroom",
        prepare="send.prepare_mailroom",
        send="send.mailroom_send",
        env=env,
        unavailable=unavailable,
    )


def _outcome_log(db: str) -> str | None:
    """None if this mailroom can turn SQLite's outcome log off and ``db`` is SQLite."""
    from mailroom import conf

    if db != "sqlite":
        return "SQLite only"
    if "SQLITE_OUTCOME_LOG" not in conf.DEFAULTS:
        return "not applicable (this mailroom has no SQLITE_OUTCOME_LOG setting)"
    return None


def _flush_every(db: str) -> str | None:
    """None if this mailroom has the FLUSH_EVERY setting, else why the row is not measured."""
    from mailroom import conf

    if "FLUSH_EVERY" not in conf.DEFAULTS:
        return "not applicable (this mailroom has no FLUSH_EVERY setting)"
    return None


@dataclass(frozen=True, kw_only=True)
class SendConfig:
    key: str
    name: str
    app: str
    send: str
    prepare: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    #: None when the configuration can run here (on database ``db``), else why it cannot.
    unavailable: Callable[[str], str | None] = lambda db: None
    #: The target, as a minimum ratio to raw smtplib over one connection.
    target: float | None = None


SEND = (
    SendConfig(
        key=RAW,
        name="raw smtplib, 1 connection",
        app="mailroom",
        send="send.raw_smtplib",
        params={"connections": 1},
    ),
    SendConfig(
        key="raw1-pipelined",
        name="raw smtplib, 1 connection, with RFC 2920 pipelining (MAIL, RCPT, DATA in one write)",
        app="mailroom",
        send="send.raw_smtplib",
        params={"connections": 1, "pipelining": True},
    ),
    SendConfig(
        key="raw2",
        name="raw smtplib, 2 connections (2 processes)",
        app="mailroom",
        send="send.raw_smtplib",
        params={"connections": 2},
    ),
    SendConfig(
        key="raw2-pipelined",
        name="raw smtplib, 2 connections (2 processes), with RFC 2920 pipelining",
        app="mailroom",
        send="send.raw_smtplib",
        params={"connections": 2, "pipelining": True},
    ),
    SendConfig(
        key="django-smtp",
        name="Django SMTP backend, 1 connection, no queue",
        app="mailroom",
        send="send.django_smtp",
    ),
    SendConfig(
        key="mailroom-send",
        name="mailroom send (1 process)",
        app="mailroom",
        prepare="send.prepare_mailroom",
        send="send.mailroom_send",
        target=0.95,
    ),
    _send_variant(
        "mailroom-send-lockstep",
        "SMTP_PIPELINING=False (one command at a time)",
        {"BENCH_SMTP_PIPELINING": "0"},
        _smtp_pipelining,
    ),
    _send_variant(
        "mailroom-send-bulk-flush",
        "FLUSH_EVERY=100 (outcomes written once per batch)",
        {"BENCH_FLUSH_EVERY": "100"},
        _flush_every,
    ),
    _send_variant(
        "mailroom-send-commit-each",
        "SQLITE_OUTCOME_LOG=False (a database commit per message)",
        {"BENCH_SQLITE_OUTCOME_LOG": "0"},
        _outcome_log,
    ),
    _send_variant(
        "mailroom-send-wal", "SQLite in WAL mode", {"BENCH_SQLITE_WAL": "1"}, _sqlite_only
    ),
    SendConfig(
        key="mailroom-worker",
        name="mailroom worker --concurrency 2 --burst",
        app="mailroom",
        prepare="send.prepare_mailroom",
        send="send.mailroom_worker",
        params={"concurrency": 2},
        unavailable=_worker_command,
        target=1.4,
    ),
    SendConfig(
        key="mailroom-worker-procs",
        name="mailroom worker --processes 2 --burst",
        app="mailroom",
        prepare="send.prepare_mailroom",
        send="send.mailroom_worker",
        params={"concurrency": 1, "processes": 2},
        unavailable=_worker_command,
        target=1.4,
    ),
    SendConfig(
        key="mailroom-worker-p2c2",
        name="mailroom worker --processes 2 --concurrency 2 --burst",
        app="mailroom",
        prepare="send.prepare_mailroom",
        send="send.mailroom_worker",
        params={"concurrency": 2, "processes": 2},
        unavailable=_worker_command,
        target=1.4,
    ),
    SendConfig(
        key="mailer",
        name="django-mailer send_mail (send_all)",
        app="mailer",
        prepare="send.prepare_mailer",
        send="send.mailer_send",
    ),
    SendConfig(
        key="post-office",
        name="django-post_office, default (1 process x 5 threads)",
        app="post_office",
        prepare="send.prepare_post_office",
        send="send.post_office_send",
        env={"BENCH_PO_THREADS": "5"},
    ),
    SendConfig(
        key="post-office-1t",
        name="django-post_office, 1 process x 1 thread",
        app="post_office",
        prepare="send.prepare_post_office",
        send="send.post_office_send",
        env={"BENCH_PO_THREADS": "1"},
    ),
)

#: Big messages: mailroom send beside raw smtplib, for each of these shapes. With 50
#: recipients, one command at a time and pipelined too: there pipelining saves 50 round trips
#: a message. A 1 MiB message takes many milliseconds to carry, against which one or two round
#: trips do not show, so that shape runs the two configurations only.
BIG_SHAPES = ("attachment", "recipients50")
BIG_KEYS = {
    "attachment": (RAW, "mailroom-send"),
    "recipients50": (RAW, "raw1-pipelined", "mailroom-send", "mailroom-send-lockstep"),
}


def big_configs(shape: str) -> tuple[SendConfig, ...]:
    return tuple(c for c in SEND if c.key in BIG_KEYS[shape])


@dataclass(frozen=True, kw_only=True)
class EnqueueConfig:
    key: str
    name: str
    app: str
    task: str
    params: dict[str, Any]
    #: A peer's one-per-transaction API: the best of these is the yardstick.
    peer: bool = False
    #: The target, as a minimum ratio to the best peer's one-per-transaction rate.
    target: float | None = None


ENQUEUE = (
    EnqueueConfig(
        key="enqueue-mailroom",
        name="mailroom enqueue(), 1 per transaction",
        app="mailroom",
        task="enqueue.one_per_transaction",
        params={},
        target=1.0,
    ),
    EnqueueConfig(
        key="enqueue-mailer",
        name="django-mailer send_mail(), 1 per transaction",
        app="mailer",
        task="enqueue.one_per_transaction",
        params={},
        peer=True,
    ),
    EnqueueConfig(
        key="enqueue-post-office",
        name="django-post_office mail.send(), 1 per transaction",
        app="post_office",
        task="enqueue.one_per_transaction",
        params={},
        peer=True,
    ),
    EnqueueConfig(
        key="bulk-mailroom",
        name="mailroom enqueue_many(), bulk",
        app="mailroom",
        task="enqueue.bulk",
        params={"api": "enqueue_many"},
        target=10.0,
    ),
    EnqueueConfig(
        key="bulk-mailroom-mass",
        name="mailroom via send_mass_mail(), bulk",
        app="mailroom",
        task="enqueue.bulk",
        params={"api": "send_mass_mail"},
        target=10.0,
    ),
    EnqueueConfig(
        key="bulk-mailer",
        name="django-mailer via send_mass_mail(), bulk",
        app="mailer",
        task="enqueue.bulk",
        params={"api": "send_mass_mail"},
    ),
    EnqueueConfig(
        key="bulk-post-office",
        name="django-post_office send_many(), bulk",
        app="post_office",
        task="enqueue.bulk",
        params={"api": "send_many"},
    ),
)

#: A mail server a network away: the send configurations that show how each client copes with
#: round trips, against the sink behind bench.latency's proxy holding each chunk this long each
#: way (a round trip of twice that, as to an ESP's SMTP endpoint in a nearby region).
REMOTE_KEYS = (
    RAW,
    "raw1-pipelined",
    "django-smtp",
    "mailroom-send",
    "mailroom-send-lockstep",
    "mailer",
    "post-office-1t",
)
REMOTE = tuple(c for c in SEND if c.key in REMOTE_KEYS)
REMOTE_DELAY_MS = 2.5

SUITES = ("send", "big", "remote", "enqueue", "pickup", "queries")
