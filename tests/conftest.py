"""Fixtures shared by mailroom's whole test suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fake_esp import FakeESPServer
from tests.support.smtp_server import ScriptedSMTPServer


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
