"""One HTTP POST to a checked address: no redirects, a hard deadline, a bounded response read.

The connection goes to ``target.address`` (checked by ssrf.target_check); for https, TLS still
verifies the certificate against ``target.host`` (SNI and hostname check), and Host names it.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from django.conf import settings

from runs.webhooks.ssrf import CheckedTarget

MAX_RESPONSE_BYTES = 4096
USER_AGENT = "DPP-Webhooks/1"


@dataclass(frozen=True)
class SendResult:
    status_code: int | None
    error_class: str  # "" on a 2xx
    error_detail: str
    duration_ms: int
    retry_after_seconds: int | None
    response_excerpt: str

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _pinned(connection_class, target: CheckedTarget, timeout: float, **kwargs):
    connection = connection_class(target.host, target.port, timeout=timeout, **kwargs)

    def create_connection(address, timeout=None, source_address=None):
        # Ignore the name: connect to the address that was checked.
        return socket.create_connection((target.address, target.port), timeout, source_address)

    connection._create_connection = create_connection
    return connection


def _ssl_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _retry_after(value: str | None) -> int | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(int(value), 24 * 3600)
    try:
        when = parsedate_to_datetime(value)
        return max(0, min(int(when.timestamp() - time.time()), 24 * 3600))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def post(*, target: CheckedTarget, body: bytes, headers: dict[str, str], timeout: float | None = None,
         connection_factory=None) -> SendResult:
    """POST ``body``; never raises for network outcomes (they are results)."""
    timeout = float(timeout or settings.DPP_WEBHOOK_TIMEOUT_SECONDS)
    started = time.monotonic()
    if connection_factory is None:
        if target.scheme == "https":
            connection = _pinned(http.client.HTTPSConnection, target, timeout, context=_ssl_context())
        else:
            connection = _pinned(http.client.HTTPConnection, target, timeout)
    else:
        connection = connection_factory(target, timeout)
    # The socket timeout bounds each operation; this watchdog bounds the whole exchange.
    expired = threading.Event()

    def _expire():
        expired.set()
        sock = getattr(connection, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    watchdog = threading.Timer(timeout, _expire)
    watchdog.daemon = True
    watchdog.start()

    def result(status=None, error_class="", detail="", retry_after=None, excerpt=""):
        return SendResult(status_code=status, error_class=error_class, error_detail=detail[:300],
                          duration_ms=int((time.monotonic() - started) * 1000), retry_after_seconds=retry_after,
                          response_excerpt=excerpt[:512])

    try:
        connection.request("POST", target.path, body=body, headers={
            **headers, "Content-Type": "application/json", "User-Agent": USER_AGENT,
            "Content-Length": str(len(body)),
        })
        response = connection.getresponse()
        excerpt = response.read(MAX_RESPONSE_BYTES).decode("utf-8", errors="replace")
        status = response.status
        if 200 <= status < 300:
            return result(status, excerpt=excerpt)
        if 300 <= status < 400:
            return result(status, "redirect", f"HTTP {status} (redirects are not followed)",
                          excerpt=excerpt)
        return result(status, "http_status", f"HTTP {status}", retry_after=_retry_after(response.getheader("Retry-After")),
                      excerpt=excerpt)
    except ssl.SSLError as error:
        return result(error_class="tls", detail=f"TLS: {type(error).__name__}: {error}")
    except TimeoutError:
        return result(error_class="timeout", detail=f"no answer within {timeout:g} s")
    except (OSError, http.client.HTTPException) as error:
        if expired.is_set():
            return result(error_class="timeout", detail=f"no complete answer within {timeout:g} s")
        return result(error_class="connect", detail=f"{type(error).__name__}: {error}")
    finally:
        watchdog.cancel()
        connection.close()
