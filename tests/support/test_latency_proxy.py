"""The benchmark's latency proxy (bench/latency.py) carries every byte, in order, both ways,
holds each round trip at least twice its delay, and passes a close on."""

from __future__ import annotations

import smtplib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from bench.latency import LatencyProxy

from mailroom.smtp_transaction import sendmail
from tests.support.smtp_server import ScriptedSMTPServer

DELAY_MS = 20.0


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A TCP server that echoes what it reads, then closes when the client does."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    listener.close()
    thread.join(5)


def test_bytes_go_both_ways_in_order_and_each_round_trip_waits(echo_port) -> None:
    with (
        LatencyProxy(echo_port, delay_ms=DELAY_MS) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as client,
    ):
        for n in range(3):
            payload = bytes(range(256)) * (n + 1)
            started = time.monotonic()
            client.sendall(payload)
            received = b""
            while len(received) < len(payload):
                received += client.recv(65536)
            # A lower bound only: the proxy holds each chunk at least its delay each way.
            assert time.monotonic() - started >= 2 * DELAY_MS / 1000
            assert received == payload
        client.shutdown(socket.SHUT_WR)
        assert client.recv(1) == b""  # the echo server's close came through


def test_an_smtp_dialogue_goes_through_it_pipelined() -> None:
    with ScriptedSMTPServer() as server, LatencyProxy(server.port, delay_ms=1) as proxy:
        server.script.pipelining = True
        with smtplib.SMTP("127.0.0.1", proxy.port, timeout=5) as conn:
            for i in range(3):
                message = f"Message-ID: <{i}@x>\r\nSubject: s\r\n\r\nbody\r\n".encode()
                sendmail(
                    conn, "f@x.org", ["a@x.org", "b@x.org"], message, before_commit=lambda: None
                )
        assert server.count == 3
        assert server.pipelined == 3
