"""Fixtures shared by mailroom's whole test suite."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.management import call_command

from tests.support.fake_esp import FakeESPServer
from tests.support.smtp_server import ScriptedSMTPServer


@pytest.fixture(scope="session", autouse=True)
def _no_outcome_log_left_behind() -> Iterator[None]:
    """The test database's outcome log (SQLite; ``mailroom.outcome_log``) goes with it: Django
    removes the database file, not what mailroom keeps beside it."""
    yield
    from django.conf import settings

    from mailroom import outcome_log

    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        name = str(database.get("TEST", {}).get("NAME") or "")
        if name and not name.startswith("file:"):
            log = outcome_log.for_database(name)
            log.close()
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(log.path + suffix)


@pytest.fixture
def smtp_server() -> Iterator[ScriptedSMTPServer]:
    """A real SMTP server on 127.0.0.1, accepting everything until its ``script`` says otherwise."""
    with ScriptedSMTPServer() as server:
        yield server


@pytest.fixture
def fake_esp() -> Iterator[FakeESPServer]:
    """A fake Postmark/SparkPost API; point anymail at it with ``api_url=fake_esp.url``."""
    with FakeESPServer() as server:
        yield server


SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


def smtp_options(server: ScriptedSMTPServer) -> dict[str, object]:
    return {"host": server.host, "port": server.port, "timeout": 5}


@pytest.fixture
def mailroom_settings(settings: Any) -> Callable[..., None]:
    """Configure MAILROOM for a test: ``mailroom_settings(BACKENDS=..., MAX_ATTEMPTS=...)``.

    The queueing backend is put back in
    EMAIL_BACKEND (the test runner swaps every backend for locmem).
    """

    def configure(**overrides: Any) -> None:
        settings.EMAIL_BACKEND = "mailroom.backend.EmailBackend"
        settings.MAILROOM = {
            # Message retries come due at once (tests call retry_deferred to make them due);
            # a backend pause lasts a minute, so it never ends by itself during a test: tests
            # lift it with resume_backends(), which makes them independent of timing.
            "BACKOFF_BASE": 0.01,
            "BACKEND_BACKOFF_BASE": 60,
            "MISCONFIGURED_BACKOFF_BASE": 60,
            **overrides,
        }

    return configure


@pytest.fixture
def queue_to_smtp(
    smtp_server: ScriptedSMTPServer, mailroom_settings: Callable[..., None]
) -> ScriptedSMTPServer:
    """mailroom queues via EMAIL_BACKEND and delivers to the scripted SMTP server."""
    mailroom_settings(
        BACKENDS={"default": {"BACKEND": SMTP_BACKEND, "OPTIONS": smtp_options(smtp_server)}}
    )
    return smtp_server


@pytest.fixture
def run_send() -> Callable[..., str]:
    """Run ``manage.py mailroom send`` and return what it printed."""

    def run(*args: str) -> str:
        out = io.StringIO()
        call_command("mailroom", "send", *args, stdout=out)
        return out.getvalue()

    return run
