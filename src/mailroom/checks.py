"""System checks for the ``MAILROOM`` setting. Ids are stable: ``mailroom.E001`` ..."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import router
from django.db.utils import load_backend
from django.utils.module_loading import import_string

from . import compat
from .conf import DEFAULTS, raw_settings
from .ratelimit import Rate

_QUEUE_BACKEND = "mailroom.backend.EmailBackend"
_POSITIVE_INTS = ("MAX_ATTEMPTS", "BATCH_SIZE", "ERROR_TEXT_LIMIT", "FLUSH_EVERY")
_DURATIONS = (
    "MAX_AGE",
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "BACKEND_BACKOFF_BASE",
    "BACKEND_BACKOFF_CAP",
    "MISCONFIGURED_BACKOFF_BASE",
    "MISCONFIGURED_BACKOFF_CAP",
    "RETRY_AFTER_CAP",
    "LEASE",
    "SMTP_TIMEOUT",
    "POLL_INTERVAL",
    "BURST_PATIENCE",
)
#: Of those, the ones 0 cannot be: a lease of 0 lets any other worker take back a message
#: being sent (sent twice), a poll interval of 0 is a worker polling its database in a busy
#: loop, and a socket timeout of 0 makes every SMTP read fail at once.
_NOT_ZERO = frozenset({"LEASE", "POLL_INTERVAL", "SMTP_TIMEOUT"})


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    user = getattr(settings, "MAILROOM", None)
    if user is not None and not isinstance(user, Mapping):
        return [Error("MAILROOM must be a dict.", id="mailroom.E001")]
    errors: list[CheckMessage] = [
        Warning(
            f"MAILROOM has an unknown key {key!r}.",
            hint=f"Known keys: {', '.join(sorted(DEFAULTS))}.",
            id="mailroom.W001",
        )
        for key in (user or {})
        if key not in DEFAULTS
    ]
    raw = raw_settings()
    errors += _check_numbers(raw)
    errors += _check_backends(raw)
    errors += _check_classifiers(raw)
    errors += _check_mailers()
    errors += _check_listen_database(raw["LISTEN_DATABASE"])
    errors += _check_routers()
    return errors


def _check_routers() -> list[CheckMessage]:
    """mailroom reads its tables where it writes them. A worker reads back the messages it has
    just claimed, and every worker reads the state they share (a backend's pause, a rate
    limit's slots): from a replica that lags, it would see them as they were."""
    for model in apps.get_app_config("mailroom").get_models():
        reads, writes = router.db_for_read(model), router.db_for_write(model)
        if reads != writes:
            return [
                Warning(
                    f"DATABASE_ROUTERS send reads of mailroom's {model.__name__} to "
                    f"{reads!r} and writes to {writes!r}: workers would read the queue and "
                    "the state they share from a copy that may lag behind.",
                    hint="Route app_label 'mailroom' to one database for reads and writes "
                    "(docs/workers.md, 'Database routers').",
                    id="mailroom.W002",
                )
            ]
    return []


def _check_listen_database(alias: Any) -> list[CheckMessage]:
    if alias is None:
        return []
    databases = settings.DATABASES
    if not isinstance(alias, str) or alias not in databases:
        return [
            Error(
                f"MAILROOM['LISTEN_DATABASE'] must be None or an alias of DATABASES, not "
                f"{alias!r}.",
                hint=f"Aliases: {', '.join(sorted(databases))}.",
                id="mailroom.E010",
            )
        ]
    try:
        vendor = load_backend(str(databases[alias]["ENGINE"])).DatabaseWrapper.vendor
    except Exception:  # Django's own checks report an engine that cannot be loaded
        return []
    if vendor != "postgresql":
        return [
            Error(
                f"MAILROOM['LISTEN_DATABASE'] is {alias!r}, a {vendor} database: only "
                "PostgreSQL has LISTEN.",
                id="mailroom.E010",
            )
        ]
    return []


def _check_numbers(raw: Mapping[str, Any]) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for key in _POSITIVE_INTS:
        value = raw[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            errors.append(
                Error(
                    f"MAILROOM[{key!r}] must be a positive integer, not {value!r}.",
                    id="mailroom.E006",
                )
            )
    for key in _DURATIONS:
        value = raw[key]
        seconds = value.total_seconds() if isinstance(value, timedelta) else value
        least = "more than 0" if key in _NOT_ZERO else "0 or more"
        if (
            not isinstance(seconds, (int, float))
            or isinstance(seconds, bool)
            # NaN compares false with everything, infinity overflows a date: neither is a time.
            or not math.isfinite(seconds)
            or seconds < 0
            or (seconds == 0 and key in _NOT_ZERO)
        ):
            errors.append(
                Error(
                    f"MAILROOM[{key!r}] must be a number of seconds ({least}) or a timedelta, "
                    f"not {value!r}.",
                    id="mailroom.E006",
                )
            )
    if not isinstance(raw["BACKOFF_FACTOR"], (int, float)) or raw["BACKOFF_FACTOR"] < 1:
        errors.append(
            Error("MAILROOM['BACKOFF_FACTOR'] must be a number >= 1.", id="mailroom.E006")
        )
    return errors


def _check_backends(raw: Mapping[str, Any]) -> list[CheckMessage]:
    backends = raw["BACKENDS"]
    if backends is None:
        return []
    if not isinstance(backends, Mapping) or not backends:
        return [
            Error("MAILROOM['BACKENDS'] must be a non-empty dict of aliases.", id="mailroom.E002")
        ]
    errors: list[CheckMessage] = []
    for alias, conf in backends.items():
        where = f"MAILROOM['BACKENDS'][{alias!r}]"
        if not isinstance(conf, Mapping):
            errors.append(Error(f"{where} must be a dict.", id="mailroom.E002"))
            continue
        if not isinstance(conf.get("OPTIONS", {}), Mapping):
            errors.append(Error(f"{where}['OPTIONS'] must be a dict.", id="mailroom.E002"))
        if conf.get("RATE_LIMIT") is not None:
            try:
                Rate.parse(conf["RATE_LIMIT"])
            except ValueError as exc:
                errors.append(Error(f"{where}['RATE_LIMIT']: {exc}", id="mailroom.E009"))
        if "MAILER" in conf:
            if not compat.HAS_MAILERS:
                errors.append(
                    Error(f"{where}['MAILER'] needs Django 6.1 or later.", id="mailroom.E002")
                )
            continue
        path = conf.get("BACKEND", "django.core.mail.backends.smtp.EmailBackend")
        if path == _QUEUE_BACKEND:
            errors.append(
                Error(
                    f"{where} delivers through mailroom's own queueing backend.",
                    hint="Name the backend that really sends (SMTP, an ESP).",
                    id="mailroom.E004",
                )
            )
            continue
        try:
            import_string(path)
        except ImportError as exc:
            errors.append(
                Error(f"{where}['BACKEND'] cannot be imported: {exc}", id="mailroom.E003")
            )
    default = raw["DEFAULT_BACKEND"]
    if default not in backends:
        errors.append(
            Error(
                f"MAILROOM['DEFAULT_BACKEND'] is {default!r}, which is not in BACKENDS.",
                id="mailroom.E005",
            )
        )
    return errors


def _check_classifiers(raw: Mapping[str, Any]) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for rule in raw["CLASSIFIERS"]:
        try:
            target = import_string(rule) if isinstance(rule, str) else rule
        except ImportError as exc:
            errors.append(
                Error(
                    f"MAILROOM['CLASSIFIERS'] entry {rule!r} cannot be imported: {exc}",
                    id="mailroom.E007",
                )
            )
            continue
        if not callable(target):
            errors.append(
                Error(
                    f"MAILROOM['CLASSIFIERS'] entry {rule!r} is not callable.", id="mailroom.E007"
                )
            )
    return errors


def _check_mailers() -> list[CheckMessage]:
    if not compat.mailers_configured():
        return []
    errors: list[CheckMessage] = []
    mailers = settings.MAILERS  # type: ignore[misc]
    for alias, conf in mailers.items():
        if conf.get("BACKEND") != _QUEUE_BACKEND:
            continue
        using = conf.get("OPTIONS", {}).get("using")
        target = using or raw_settings()["DEFAULT_BACKEND"]
        if target == alias:
            errors.append(
                Error(
                    f"MAILERS[{alias!r}] queues with mailroom and would deliver through itself.",
                    hint="Set OPTIONS={'using': '<alias of the backend that sends>'}.",
                    id="mailroom.E008",
                )
            )
        elif target in mailers and mailers[target].get("BACKEND") == _QUEUE_BACKEND:
            errors.append(
                Error(
                    f"MAILERS[{alias!r}] delivers through {target!r}, another mailroom queue.",
                    id="mailroom.E008",
                )
            )
    return errors
