"""The counting SMTP sink, in a process of its own, started afresh for every run.

It is the test suite's aiosmtpd server (``tests/support/smtp_server.py --count-only``): it
accepts, counts and discards. A run that did not deliver exactly what it claims fails loudly.
It offers PIPELINING (RFC 2920) in its EHLO reply, as Postfix, Exim and the ESPs' SMTP
endpoints do, unless it is started with ``pipelining=False``; it counts the mail transactions
that came pipelined, so a run shows which clients used it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[1]


class SinkCountMismatch(AssertionError):
    """The sink did not receive what the run says it sent."""


def start_listening(command: list[str], what: str) -> tuple[subprocess.Popen[str], int]:
    """Start ``command``, a server that prints the port it listens on as its first line."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        proc.kill()
        raise RuntimeError(f"{what} did not start (it said {line!r})")
    return proc, int(line)


class Sink:
    """``with Sink() as sink: ...; stats = sink.stop()``: ``stats["messages"]`` is the count."""

    def __init__(self, *, pipelining: bool = True) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.pipelining = pipelining

    def __enter__(self) -> Sink:
        command = [sys.executable, str(ROOT / "tests/support/smtp_server.py"), "--count-only"]
        if self.pipelining:
            command.append("--pipelining")
        self.proc, self.port = start_listening(command, "the SMTP sink")
        return self

    def stop(self) -> dict[str, int]:
        """Stop the sink and return its counts (messages, recipients, connections...)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=60)
        return {k: int(v) for k, v in json.loads(out.strip().splitlines()[-1]).items()}

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def check_count(
    what: str, stats: dict[str, int], *, messages: int, duplicates_allowed: bool = False
) -> None:
    """Raise unless the sink received exactly ``messages`` (each once, by Message-ID)."""
    if stats["messages"] != messages:
        raise SinkCountMismatch(
            f"{what}: the sink received {stats['messages']} messages, expected {messages}"
        )
    if stats.get("duplicates") and not duplicates_allowed:
        raise SinkCountMismatch(f"{what}: the sink received {stats['duplicates']} duplicates")
