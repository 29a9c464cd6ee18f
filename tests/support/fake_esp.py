"""A fake email-service-provider HTTP API for mailroom's tests, demo and benchmarks.

``FakeESPServer`` speaks just enough of Postmark's API (``POST /email``) and SparkPost's
(``POST /transmissions/``) for django-anymail's real backends to send through it, given
``api_url=server.url``. It records every request and answers from a script: one-shot responses
consumed in order, per-recipient rules, a standing default. Each answer is a status with a JSON
body and headers, optionally after a delay, or a connection closed without any response.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import Message
from email.utils import getaddresses
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

HOST = "127.0.0.1"


@dataclass(frozen=True, kw_only=True)
class FakeResponse:
    """One scripted answer. ``json=None`` means the API's normal body: a success for a 2xx
    status, else ``{"Message": <reason>}``."""

    status: int = 200
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (or dropping)
    drop: bool = False  # close the connection without any response


@dataclass(frozen=True, kw_only=True)
class RecordedRequest:
    method: str
    path: str
    headers: Message  # case-insensitive: headers["x-postmark-server-token"]
    json: Any
    api: str | None  # "postmark", "sparkpost", or None for an unknown path
    recipients: tuple[str, ...]  # every To/Cc/Bcc address, lowercased


@dataclass(frozen=True, kw_only=True)
class AcceptedMessage:
    api: str
    message_id: str | None
    recipients: tuple[str, ...]
    payload: Any


def postmark_invalid_address(address: str) -> dict[str, Any]:
    """Postmark's 422 body for a bad recipient; anymail reads the address out of the text."""
    return {"ErrorCode": 300, "Message": f"Invalid 'To' address: '{address}'."}


def postmark_inactive_recipients(*addresses: str) -> dict[str, Any]:
    """Postmark's 422 body when every recipient is suppressed (hard bounce or complaint)."""
    return {
        "ErrorCode": 406,
        "Message": "You tried to send to recipient(s) that have been marked as inactive. "
        f"Found inactive addresses: {', '.join(addresses)}. "
        "Inactive recipients are ones that have generated a hard bounce or a spam complaint.",
    }


@dataclass(kw_only=True)
class _RecipientRule:
    address: str
    response: FakeResponse
    times_left: int | None  # None: for ever


def _api_for(path: str) -> str | None:
    path = path.split("?", 1)[0].rstrip("/")
    if path.endswith("/email"):
        return "postmark"
    if path.endswith("/transmissions"):
        return "sparkpost"
    return None


def _recipients(api: str | None, payload: Any) -> tuple[str, ...]:
    if not isinstance(payload, dict):
        return ()
    if api == "postmark":
        fields = [payload.get(name) or "" for name in ("To", "Cc", "Bcc")]
        return tuple(addr.lower() for _name, addr in getaddresses(fields) if addr)
    if api == "sparkpost":
        found = []
        for recipient in payload.get("recipients") or []:
            address = recipient.get("address") if isinstance(recipient, dict) else None
            email = address.get("email") if isinstance(address, dict) else address
            if email:
                found.append(str(email).lower())
        return tuple(found)
    return ()


def _success(api: str, payload: Any, recipients: tuple[str, ...]) -> tuple[Any, str]:
    """The body a real API gives for an accepted message, and the id it assigns."""
    if api == "postmark":
        message_id = str(uuid.uuid4())
        return {
            "To": payload.get("To", "") if isinstance(payload, dict) else "",
            "SubmittedAt": datetime.now(timezone.utc).isoformat(),
            "MessageID": message_id,
            "ErrorCode": 0,
            "Message": "OK",
        }, message_id
    transmission_id = str(uuid.uuid4().int)[:18]
    return {
        "results": {
            "total_rejected_recipients": 0,
            "total_accepted_recipients": len(recipients),
            "id": transmission_id,
        }
    }, transmission_id


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a request still sleeping on a scripted delay must not block stop()

    def __init__(self, address: tuple[str, int], fake: FakeESPServer) -> None:
        self.fake = fake
        super().__init__(address, _RequestHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (its timeout ran out during a scripted delay) is not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    server: _HTTPServer
    # HTTP/1.0 closes the connection after every response. With keep-alive, a connection opened
    # before stop() would go on being served by its old thread while the API is meant to be down.
    protocol_version = "HTTP/1.0"

    def do_POST(self) -> None:
        self.server.fake._serve(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet


class FakeESPServer:
    """A Postmark- and SparkPost-compatible HTTP API on ``url`` that follows its script.

    Which answer a request gets: the first matching per-recipient rule, else the next one-shot
    response, else the standing ``always`` response, else a normal success. The port is fixed at
    construction, so ``stop()`` and ``start()`` take the API down and bring it back on the same
    ``url``; the records survive.
    """

    def __init__(self, port: int | None = None, *, host: str = HOST) -> None:
        self.host = host
        self.port = port or _free_port(host)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Condition()
        self._queue: deque[FakeResponse] = deque()
        self._rules: list[_RecipientRule] = []
        self._always: FakeResponse | None = None
        self._requests: list[RecordedRequest] = []
        self._accepted: list[AcceptedMessage] = []

    @property
    def url(self) -> str:
        """The ``api_url`` to give anymail's backends."""
        return f"http://{self.host}:{self.port}/"

    # -- running ------------------------------------------------------------------------------

    def start(self) -> FakeESPServer:
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer((self.host, self.port), self)
        # serve_forever() notices shutdown() only between polls: poll often so stop() is quick.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"fake-esp-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, thread, self._httpd, self._thread = self._httpd, self._thread, None, None
        if httpd is None or thread is None:
            return
        httpd.shutdown()
        httpd.server_close()
        thread.join()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def __enter__(self) -> FakeESPServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType
    ) -> None:
        self.stop()

    # -- the script ---------------------------------------------------------------------------

    def respond_once(
        self,
        status: int = 200,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        delay: float = 0.0,
        drop: bool = False,
    ) -> None:
        """Answer the next request that no recipient rule claims like this (queued in order)."""
        response = FakeResponse(
            status=status, json=json, headers=headers or {}, delay=delay, drop=drop
        )
        with self._lock:
            self._queue.append(response)

    def always(
        self,
        status: int = 200,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        delay: float = 0.0,
        drop: bool = False,
    ) -> None:
        """Answer every request that nothing more specific claims like this."""
        response = FakeResponse(
            status=status, json=json, headers=headers or {}, delay=delay, drop=drop
        )
        with self._lock:
            self._always = response

    def for_recipient(
        self,
        address: str,
        status: int = 200,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        delay: float = 0.0,
        drop: bool = False,
        times: int | None = None,
    ) -> None:
        """Answer requests that include ``address`` like this (``times`` times, or for ever)."""
        response = FakeResponse(
            status=status, json=json, headers=headers or {}, delay=delay, drop=drop
        )
        rule = _RecipientRule(address=address.lower(), response=response, times_left=times)
        with self._lock:
            self._rules.append(rule)

    def reset(self) -> None:
        """Forget the script: every request succeeds again."""
        with self._lock:
            self._queue.clear()
            self._rules.clear()
            self._always = None

    # -- what was received --------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def accepted(self) -> list[AcceptedMessage]:
        """Messages answered with a 2xx status."""
        with self._lock:
            return list(self._accepted)

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` messages were accepted; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self._accepted) >= count, timeout)

    def clear(self) -> None:
        """Forget every recorded request (the script stays)."""
        with self._lock:
            self._requests.clear()
            self._accepted.clear()

    # -- called from request threads ----------------------------------------------------------

    def _choose(self, recipients: tuple[str, ...]) -> FakeResponse:
        with self._lock:
            for rule in self._rules:
                if rule.address in recipients and rule.times_left != 0:
                    if rule.times_left is not None:
                        rule.times_left -= 1
                    return rule.response
            if self._queue:
                return self._queue.popleft()
            return self._always or FakeResponse()

    def _serve(self, handler: _RequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        api = _api_for(handler.path)
        recipients = _recipients(api, payload)
        request = RecordedRequest(
            method=handler.command,
            path=handler.path,
            headers=handler.headers,
            json=payload,
            api=api,
            recipients=recipients,
        )
        with self._lock:
            self._requests.append(request)
        if api is None:
            self._respond(handler, 404, {"Message": f"No API at {handler.path}"}, {})
            return

        response = self._choose(recipients)
        if response.delay:
            time.sleep(response.delay)
        if response.drop:
            return  # the server closes the socket after us: the client gets no response at all
        if 200 <= response.status < 300:
            body_json, assigned_id = _success(api, payload, recipients)
            message_id: str | None = assigned_id
            if response.json is not None:  # a scripted body: whatever id it has is not ours
                body_json, message_id = response.json, None
            with self._lock:
                self._accepted.append(
                    AcceptedMessage(
                        api=api, message_id=message_id, recipients=recipients, payload=payload
                    )
                )
                self._lock.notify_all()
        else:
            body_json = response.json
            if body_json is None:
                body_json = {"Message": _reason(response.status)}
        self._respond(handler, response.status, body_json, response.headers)

    @staticmethod
    def _respond(
        handler: _RequestHandler, status: int, body: Any, headers: Mapping[str, str]
    ) -> None:
        encoded = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(encoded)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(encoded)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # non-standard codes such as SparkPost's 420
        return "Error"


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
