"""System checks for the MAILROOM setting: each mistake has a stable id and a clear message."""

from __future__ import annotations

import pytest
from django.db import connection

from mailroom.checks import check_settings


def ids(settings_obj) -> list[str]:
    return [m.id for m in check_settings()]


def test_default_settings_pass(settings) -> None:
    del settings.MAILROOM
    assert ids(settings) == []


@pytest.mark.parametrize(
    ("mailroom", "expected"),
    [
        ("not a dict", "mailroom.E001"),
        ({"BACKENDS": {}}, "mailroom.E002"),
        ({"BACKENDS": {"default": "smtp"}}, "mailroom.E002"),
        ({"BACKENDS": {"default": {"BACKEND": "no.such.Backend"}}}, "mailroom.E003"),
        ({"BACKENDS": {"default": {"BACKEND": "mailroom.backend.EmailBackend"}}}, "mailroom.E004"),
        ({"BACKENDS": {"smtp": {}}}, "mailroom.E005"),
        ({"MAX_ATTEMPTS": 0}, "mailroom.E006"),
        ({"LEASE": -1}, "mailroom.E006"),
        ({"LEASE": 0}, "mailroom.E006"),
        ({"POLL_INTERVAL": 0}, "mailroom.E006"),
        ({"SMTP_TIMEOUT": 0.0}, "mailroom.E006"),
        ({"MAX_AGE": float("nan")}, "mailroom.E006"),
        ({"BACKOFF_CAP": float("inf")}, "mailroom.E006"),
        ({"CLASSIFIERS": ["no.such.rule"]}, "mailroom.E007"),
        ({"CLASSIFIERS": [42]}, "mailroom.E007"),
        ({"MAX_ATTEMPT": 3}, "mailroom.W001"),
    ],
    ids=[
        "not-a-dict",
        "empty-backends",
        "backend-not-a-dict",
        "unimportable-backend",
        "delivers-through-itself",
        "default-alias-missing",
        "zero-attempts",
        "negative-lease",
        "zero-lease",
        "zero-poll-interval",
        "zero-smtp-timeout",
        "nan-max-age",
        "infinite-cap",
        "unimportable-rule",
        "rule-not-callable",
        "misspelt-key",
    ],
)
def test_each_mistake_is_reported_with_its_id(settings, mailroom, expected) -> None:
    settings.MAILROOM = mailroom
    assert expected in ids(settings)


def test_listen_database_must_be_a_postgresql_alias(settings) -> None:
    settings.MAILROOM = {**settings.MAILROOM, "LISTEN_DATABASE": "nowhere"}
    (message,) = check_settings()
    assert message.id == "mailroom.E010"
    assert "'nowhere'" in message.msg
    assert "default" in (message.hint or "")

    # The suite runs on each database in turn: "default" is PostgreSQL in one run only.
    settings.MAILROOM = {**settings.MAILROOM, "LISTEN_DATABASE": "default"}
    if connection.vendor == "postgresql":
        assert check_settings() == []
    else:
        (message,) = check_settings()
        assert message.id == "mailroom.E010"
        assert f"a {connection.vendor} database: only PostgreSQL has LISTEN" in message.msg


class PrimaryReplica:
    """Django's documented primary/replica router: every read to a replica."""

    def db_for_read(self, model, **hints):
        return "replica"

    def db_for_write(self, model, **hints):
        return "default"


class MailroomOnPrimary(PrimaryReplica):
    """The same, with mailroom's tables read where they are written (docs/workers.md)."""

    def db_for_read(self, model, **hints):
        return "default" if model._meta.app_label == "mailroom" else "replica"


def test_a_router_that_reads_mailroom_from_a_replica_is_warned_of(settings) -> None:
    settings.DATABASE_ROUTERS = [f"{__name__}.PrimaryReplica"]
    (message,) = check_settings()
    assert message.id == "mailroom.W002"
    assert "to 'replica' and writes to 'default'" in message.msg

    settings.DATABASE_ROUTERS = [f"{__name__}.MailroomOnPrimary"]
    assert check_settings() == []
