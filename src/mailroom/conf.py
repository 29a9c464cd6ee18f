"""The ``MAILROOM`` setting: typed defaults, read lazily, in one place.

Nothing here reads Django settings at import time. :func:`get_settings` builds a frozen
:class:`MailroomSettings` on first use and caches it; the cache is dropped whenever a test
changes ``MAILROOM`` (Django's ``setting_changed`` signal), so ``override_settings`` just works.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

#: Documented defaults. Durations are seconds (a ``timedelta`` is accepted too).
DEFAULTS: Mapping[str, Any] = {
    # Delivery backends by alias, Django-style. None means one alias, "default", that
    # delivers through Django's SMTP backend and the usual EMAIL_* settings (or, on Django
    # 6.1 with MAILERS, through the MAILERS alias of the same name).
    "BACKENDS": None,
    # The alias new messages are queued for when the caller names none.
    "DEFAULT_BACKEND": "default",
    # Charged attempts before a message is failed ("too many attempts").
    "MAX_ATTEMPTS": 10,
    # Age (since enqueue) after which a message that keeps failing transiently is failed.
    # Four days, in line with RFC 5321's advice that the give-up time be at least 4-5 days.
    "MAX_AGE": 4 * 24 * 3600,
    # Messages claimed and sent per batch (one backend connection per batch).
    "BATCH_SIZE": 100,
    # Message retry backoff: full jitter over min(cap, base * factor ** (attempt - 1)).
    "BACKOFF_BASE": 60,
    "BACKOFF_FACTOR": 2.0,
    "BACKOFF_CAP": 6 * 3600,
    # Backend pause after an outage: same shape, counted in consecutive backend faults.
    "BACKEND_BACKOFF_BASE": 15,
    "BACKEND_BACKOFF_CAP": 600,
    # A misconfigured backend will not heal itself: probe it rarely.
    "MISCONFIGURED_BACKOFF_BASE": 300,
    "MISCONFIGURED_BACKOFF_CAP": 3600,
    # Longest Retry-After we honour; a server asking for more is capped here.
    "RETRY_AFTER_CAP": 6 * 3600,
    # How long a worker's claim on a message lasts before another may take it back.
    "LEASE": 300,
    # Timeout forced on SMTP backends that have none (Django's default blocks forever).
    "SMTP_TIMEOUT": 30,
    # Send MAIL FROM, RCPT TO and DATA in one round trip to SMTP servers that offer
    # PIPELINING (RFC 2920). False: one command at a time, as smtplib does.
    "SMTP_PIPELINING": True,
    # Extra classifier rules, tried before the built-in table: callables or dotted paths.
    "CLASSIFIERS": [],
    # How much of an exception's text an attempt record keeps.
    "ERROR_TEXT_LIMIT": 2000,
    # Render SMTP-bound messages to MIME bytes at enqueue, so sending does no MIME work.
    "PRERENDER": True,
    # Outcomes written per database write. 1: each before the next message is sent, so a
    # crashed worker can duplicate at most the message in flight. Larger: faster, in bulk,
    # and a crash may send up to that many messages twice.
    "FLUSH_EVERY": 1,
    # On a SQLite file in a rollback journal, with FLUSH_EVERY = 1: note each sent message in
    # a WAL file of mailroom's own beside the database (outcome_log) and write the outcomes to
    # the database once per batch, instead of a database commit, and its disk syncs, per
    # message. False: a database commit per message.
    "SQLITE_OUTCOME_LOG": True,
    # The long-running worker looks for due mail at least this often (seconds). On
    # PostgreSQL it is also woken at once by a NOTIFY when mail is queued.
    "POLL_INTERVAL": 1.0,
    # The DATABASES alias whose PostgreSQL the worker's LISTEN connection goes to (None: the
    # default database's). Behind a pooler in transaction mode (PgBouncer), where LISTEN
    # cannot work, an alias that reaches PostgreSQL directly.
    "LISTEN_DATABASE": None,
    # ``mailroom worker --burst`` goes on through a failing database (or an error that
    # repeats) this long (seconds), then gives up and exits 1; a worker without --burst
    # waits as long as it takes.
    "BURST_PATIENCE": 30.0,
    # Put recipients refused for good as unknown (5.1.1, 5.1.2, 5.1.3, 5.1.10; an ESP's
    # "invalid"/"rejected") on the suppression list, so no later message is sent to them.
    "AUTO_SUPPRESS": False,
}


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


@dataclass(frozen=True, kw_only=True)
class BackendConfig:
    """One delivery backend alias."""

    alias: str
    #: Dotted path of an email backend class; empty when ``mailer`` is used instead.
    backend: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Django 6.1: the name of a ``MAILERS`` alias to deliver through.
    mailer: str | None = None
    #: ``"RATE_LIMIT"``: e.g. ``"20/s"``, held across every worker (see mailroom.ratelimit).
    rate_limit: str | None = None


@dataclass(frozen=True, kw_only=True)
class MailroomSettings:
    backends: Mapping[str, BackendConfig]
    default_backend: str
    max_attempts: int
    max_age: float
    batch_size: int
    backoff_base: float
    backoff_factor: float
    backoff_cap: float
    backend_backoff_base: float
    backend_backoff_cap: float
    misconfigured_backoff_base: float
    misconfigured_backoff_cap: float
    retry_after_cap: float
    lease: float
    smtp_timeout: float
    smtp_pipelining: bool
    classifiers: Sequence[Callable[..., Any] | str]
    error_text_limit: int
    prerender: bool
    flush_every: int
    sqlite_outcome_log: bool
    poll_interval: float
    listen_database: str | None
    burst_patience: float
    auto_suppress: bool


def _default_backends() -> dict[str, BackendConfig]:
    mailers = getattr(settings, "MAILERS", None)
    if mailers:
        # Django 6.1: deliver through the MAILERS alias of the same name, unless that
        # alias is mailroom itself (then the check framework reports it).
        return {
            alias: BackendConfig(alias=alias, mailer=alias)
            for alias, conf in mailers.items()
            if not str(conf.get("BACKEND", "")).startswith("mailroom.")
        }
    return {
        "default": BackendConfig(
            alias="default", backend="django.core.mail.backends.smtp.EmailBackend"
        )
    }


def _parse_backends(raw: Mapping[str, Any] | None) -> dict[str, BackendConfig]:
    if raw is None:
        return _default_backends()
    parsed = {}
    for alias, conf in raw.items():
        conf = dict(conf)
        parsed[alias] = BackendConfig(
            alias=alias,
            backend=conf.get(
                "BACKEND", "" if "MAILER" in conf else "django.core.mail.backends.smtp.EmailBackend"
            ),
            options=dict(conf.get("OPTIONS", {})),
            mailer=conf.get("MAILER"),
            rate_limit=conf.get("RATE_LIMIT"),
        )
    return parsed


def raw_settings() -> dict[str, Any]:
    """The user's ``MAILROOM`` dict merged over the defaults (for the system checks)."""
    user = getattr(settings, "MAILROOM", None) or {}
    merged = dict(DEFAULTS)
    merged.update(user)
    return merged


@functools.cache
def get_settings() -> MailroomSettings:
    raw = raw_settings()
    return MailroomSettings(
        backends=_parse_backends(raw["BACKENDS"]),
        default_backend=str(raw["DEFAULT_BACKEND"]),
        max_attempts=int(raw["MAX_ATTEMPTS"]),
        max_age=_seconds(raw["MAX_AGE"]),
        batch_size=int(raw["BATCH_SIZE"]),
        backoff_base=_seconds(raw["BACKOFF_BASE"]),
        backoff_factor=float(raw["BACKOFF_FACTOR"]),
        backoff_cap=_seconds(raw["BACKOFF_CAP"]),
        backend_backoff_base=_seconds(raw["BACKEND_BACKOFF_BASE"]),
        backend_backoff_cap=_seconds(raw["BACKEND_BACKOFF_CAP"]),
        misconfigured_backoff_base=_seconds(raw["MISCONFIGURED_BACKOFF_BASE"]),
        misconfigured_backoff_cap=_seconds(raw["MISCONFIGURED_BACKOFF_CAP"]),
        retry_after_cap=_seconds(raw["RETRY_AFTER_CAP"]),
        lease=_seconds(raw["LEASE"]),
        smtp_timeout=_seconds(raw["SMTP_TIMEOUT"]),
        smtp_pipelining=bool(raw["SMTP_PIPELINING"]),
        classifiers=tuple(raw["CLASSIFIERS"]),
        error_text_limit=int(raw["ERROR_TEXT_LIMIT"]),
        prerender=bool(raw["PRERENDER"]),
        flush_every=int(raw["FLUSH_EVERY"]),
        sqlite_outcome_log=bool(raw["SQLITE_OUTCOME_LOG"]),
        poll_interval=_seconds(raw["POLL_INTERVAL"]),
        listen_database=raw["LISTEN_DATABASE"],
        burst_patience=_seconds(raw["BURST_PATIENCE"]),
        auto_suppress=bool(raw["AUTO_SUPPRESS"]),
    )


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting in {"MAILROOM", "MAILERS", "EMAIL_BACKEND"}:
        get_settings.cache_clear()
