"""What the synchronous and the asynchronous clients share: configuration, request shaping,
the retry policy and answer parsing. No I/O here; the clients do the sending and the sleeping."""

from __future__ import annotations

import hashlib
import json
import os
import random
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from dpp_client import __version__
from dpp_client.errors import DPPError, ResultIntegrityError, error_from_response, parse_retry_after

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
#: A run in one of these is not finished; any other status (today COMPLETED, FAILED, CANCELED, and
#: whatever the server adds later) is terminal for wait(), so a new status can never hang it.
ACTIVE_STATUSES = frozenset({"QUEUED", "PROCESSING"})
#: Answers worth another attempt: the limit resets, or a gateway or dependency recovers. Every
#: POST carries an Idempotency-Key, so repeating one never creates or charges a second run.
RETRY_STATUSES = frozenset({429, 502, 503, 504})


class DPPObject(dict):
    """A JSON object of the API: a dict that also reads its keys as attributes (``run.run_id``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return DPPObject({key: wrap(item) for key, item in value.items()})
    if isinstance(value, list):
        return [wrap(item) for item in value]
    return value


def new_idempotency_key() -> str:
    """A fresh key (8 to 64 visible ASCII characters, as the API requires)."""
    return f"dpp-py-{uuid.uuid4().hex}"


def usd_string(value: str | Decimal | int) -> str:
    """A spend cap as the API's decimal string. Floats are refused: money never goes through one."""
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError("max_cost_usd must be a decimal string (e.g. '0.0500'), a Decimal or an int, never a float")
    if isinstance(value, str):
        return value  # the server validates the format and answers a typed 422 when it is wrong
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise TypeError(f"max_cost_usd {value!r} is not a decimal amount") from None
    if amount != amount.quantize(Decimal("0.0001")):
        raise ValueError(f"max_cost_usd {value!r} has more than 4 decimals")
    return f"{amount:.4f}"


def run_body(pack_type: str, inputs: dict[str, Any], *, max_cost_usd: str | Decimal | int, timebox_sec: int,
             webhook: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "pack_type": pack_type,
        "inputs": inputs,
        "reservation": {"max_cost_usd": usd_string(max_cost_usd), "timebox_sec": timebox_sec},
    }
    if webhook is not None:
        body["webhook"] = webhook
    return body


def run_id_of(run: str | dict[str, Any]) -> str:
    return str(run["run_id"]) if isinstance(run, dict) else str(run)


def next_page_params(page: Any) -> dict[str, str] | None:
    """The query of the next page of a cursor-paginated answer, or None on the last page. Only the
    query of ``next`` is kept: the server builds it from the host it was reached by, which may not
    be the one this client uses (a proxy, a container name)."""
    if not isinstance(page, dict) or not page.get("next"):
        return None
    return dict(parse_qsl(urlsplit(str(page["next"])).query, keep_blank_values=True))


def page_items(page: Any) -> list[Any]:
    if isinstance(page, list):
        return page
    if isinstance(page, dict):
        for key in ("results", "data", "items"):
            if isinstance(page.get(key), list):
                return page[key]
        lists = [value for value in page.values() if isinstance(value, list)]
        if len(lists) == 1:
            return lists[0]
    raise ValueError("the answer is not a list of objects")


def checked_envelope(content: bytes, *, expected_sha256: str, run_id: str) -> DPPObject:
    actual = hashlib.sha256(content).hexdigest()
    if actual != (expected_sha256 or "").lower():
        raise ResultIntegrityError(
            f"result of run {run_id}: SHA-256 {actual} does not match the API's {expected_sha256}"
        )
    return wrap(json.loads(content))


class ClientConfig:
    """Settings shared by Client and AsyncClient."""

    def __init__(self, base_url: str | None, api_key: str | None, *, timeout: float, max_retries: int,
                 backoff_base: float, backoff_max: float, max_retry_wait: float, user_agent: str | None):
        self.base_url = (base_url or os.environ.get("DPP_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("DPP_API_KEY")
        if not self.api_key:
            raise ValueError("an API key is needed: pass api_key= or set DPP_API_KEY")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_wait = max_retry_wait
        self.headers = {
            "Authorization": f"Bearer {self.api_key}",
            "Accept": "application/json",
            "User-Agent": user_agent or f"dpp-client-python/{__version__}",
        }

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: half fixed, half random, so clients that failed together
        do not come back together; bounded by ``backoff_max``."""
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** attempt))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def retry_delay(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before retrying this answer, or None when it must not be retried."""
        if response.status_code not in RETRY_STATUSES or attempt >= self.max_retries:
            return None
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is None:
            return self.backoff(attempt)
        if retry_after > self.max_retry_wait:
            return None  # the caller decides whether to wait that long; it gets a RateLimited with retry_after
        return retry_after + random.uniform(0, min(1.0, self.backoff_base))

    def request_headers(self, method: str, idempotency_key: str | None) -> dict[str, str]:
        headers = dict(self.headers)
        if method == "POST":
            # One key for the request and every retry of it: a response lost on the wire replays
            # the same run instead of creating (and charging) another.
            headers["Idempotency-Key"] = idempotency_key or new_idempotency_key()
        return headers

    def url(self, path: str) -> str:
        """The API URL of ``path``. An absolute URL is accepted only under ``base_url``: every
        request carries the API key, which must never reach another host (a presigned link)."""
        if path.startswith(("http://", "https://")):
            if path != self.base_url and not path.startswith(f"{self.base_url}/"):
                raise ValueError("request() takes a path of the API (or a URL under base_url); "
                                 "download results with runs.result()")
            return path
        return f"{self.base_url}{path}"


def raise_for_problem(response: httpx.Response) -> None:
    if response.is_error:
        raise error_from_response(response)


def json_of(response: httpx.Response) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        return wrap(response.json())
    except ValueError:
        raise DPPError(type="about:blank", title="Invalid response", status=response.status_code,
                       detail="the API answered something that is not JSON",
                       request_id=response.headers.get("X-Request-ID"), headers=response.headers) from None
