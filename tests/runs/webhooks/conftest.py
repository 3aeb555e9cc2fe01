"""A real webhook receiver (a threaded HTTP server on 127.0.0.1) and the settings that let
deliveries reach it (DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS=127.0.0.0/8, a short retry schedule)."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Reply:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0


class Receiver:
    def __init__(self):
        self.requests: list[Received] = []
        self.replies: deque[Reply] = deque()
        self.default = Reply()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                      body, time.time()))
                    reply = receiver.replies.popleft() if receiver.replies else receiver.default
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str = "/hooks") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def reply(self, *replies: Reply) -> None:
        with self.lock:
            self.replies.extend(replies)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.05)
        raise AssertionError(f"the receiver got {len(self.requests)} requests, expected {count}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def local_receivers(settings):
    """Deliveries may reach 127.0.0.0/8 (what DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS does outside production)."""
    settings.DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS = ["127.0.0.0/8"]
    settings.DPP_WEBHOOK_RETRY_SCHEDULE = [1, 1, 1]
    settings.DPP_WEBHOOK_TIMEOUT_SECONDS = 3
    settings.DPP_WEBHOOK_CLAIM_SECONDS = 5
    return settings


@pytest.fixture
def enqueued(monkeypatch):
    """Delivery tasks are recorded instead of sent to the broker (the real send is tested with a worker)."""
    sent: list = []

    def record(*, delivery_ids, now=None):
        sent.extend(delivery_ids)
        return len(delivery_ids)

    monkeypatch.setattr("runs.webhooks.services.webhook_deliveries_enqueue", record)
    return sent
