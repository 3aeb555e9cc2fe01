"""The DPP clients: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio), with the same
methods. Every POST carries an Idempotency-Key, the caller's or a fresh one, reused across its
retries. Retries happen on connection errors (including a connection dropped after the request
was sent), 429 (after ``Retry-After``) and 502/503/504 only, with jittered exponential backoff and
a bound on attempts."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import anyio
import httpx

from dpp_client._core import (
    ACTIVE_STATUSES,
    ClientConfig,
    DPPObject,
    checked_envelope,
    json_of,
    next_page_params,
    page_items,
    raise_for_problem,
    run_body,
    run_id_of,
)
from dpp_client.errors import APIConnectionError, ResultDownloadError, RunNotCompleted, WaitTimeout

Money = str | Decimal | int

#: Polling of wait(): start quick (a decision run takes well under a second once picked up), then
#: settle at the interval the API recommends.
POLL_FIRST_SECONDS = 0.25
POLL_MAX_SECONDS = 1.5
#: How long run() waits beyond the run's own timebox for the queue and the settlement.
RUN_WAIT_MARGIN_SECONDS = 120.0


def _next_interval(interval: float) -> float:
    return min(POLL_MAX_SECONDS, interval * 1.6)


def _usage_params(from_date: Any, to_date: Any) -> dict[str, str]:
    params = {}
    if from_date is not None:
        params["from"] = str(from_date)
    if to_date is not None:
        params["to"] = str(to_date)
    return params


def _webhook_endpoint_patch(url: str | None, event_types: list[str] | None, enabled: bool | None) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    if url is not None:
        patch["url"] = url
    if event_types is not None:
        patch["event_types"] = event_types
    if enabled is not None:
        patch["enabled"] = enabled
    return patch


class _ClientBase:
    """What the blocking and the async client share: configuration, the httpx client (which
    carries no API key: headers are set per API request, so result downloads never send it) and
    the resources. Subclasses name their httpx class, their sleep and their resources."""

    _http_class: type[httpx.Client] | type[httpx.AsyncClient]

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = 30.0,
                 max_retries: int = 4, backoff_base: float = 0.5, backoff_max: float = 8.0,
                 max_retry_wait: float = 60.0, transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
                 user_agent: str | None = None):
        self._config = ClientConfig(base_url, api_key, timeout=timeout, max_retries=max_retries,
                                    backoff_base=backoff_base, backoff_max=backoff_max,
                                    max_retry_wait=max_retry_wait, user_agent=user_agent)
        self._http = self._http_class(timeout=timeout, transport=transport, follow_redirects=False)
        self._tenant_id: str | None = None  # the key's tenant, once usage() read it from the balance
        self.runs, self.webhook_endpoints = self._resources()

    def _resources(self) -> tuple[Any, Any]:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return self._config.base_url


# --- blocking --------------------------------------------------------------------------------


class Client(_ClientBase):
    """``Client(base_url, api_key)``; both default to ``DPP_BASE_URL`` and ``DPP_API_KEY``.

    ``transport`` (an httpx transport) is for tests and custom networking; ``max_retries`` bounds
    the attempts after the first; ``max_retry_wait`` is the longest ``Retry-After`` honoured
    automatically (a longer one raises :class:`~dpp_client.errors.RateLimited` at once).
    """

    _http_class = httpx.Client
    _sleep = staticmethod(time.sleep)

    def _resources(self) -> tuple[Runs, WebhookEndpoints]:
        return Runs(self), WebhookEndpoints(self)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                idempotency_key: str | None = None) -> httpx.Response:
        """One API call with the retry policy; raises a typed error for an error answer."""
        config = self._config
        headers = config.request_headers(method, idempotency_key)
        attempt = 0
        while True:
            try:
                response = self._http.request(method, config.url(path), json=json, params=params, headers=headers)
            except httpx.TransportError as error:
                if attempt >= config.max_retries:
                    raise APIConnectionError(f"{method} {path}: {error!r} after {attempt + 1} attempts") from error
                self._sleep(config.backoff(attempt))
                attempt += 1
                continue
            delay = config.retry_delay(response, attempt)
            if delay is None:
                raise_for_problem(response)
                return response
            response.close()
            self._sleep(delay)
            attempt += 1

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return json_of(self.request(method, path, **kwargs))

    def _iterate(self, path: str, params: dict[str, Any]) -> Iterator[DPPObject]:
        query: dict[str, Any] | None = {k: v for k, v in params.items() if v is not None}
        while query is not None:
            page = self._json("GET", path, params=query)
            yield from page_items(page)
            query = next_page_params(page)

    def _download(self, url: str) -> bytes:
        config = self._config
        attempt = 0
        while True:
            try:
                response = self._http.get(url)  # no API key: headers are set per API request
            except httpx.TransportError as error:
                if attempt >= config.max_retries:
                    raise APIConnectionError(f"result download: {error!r}") from error
                self._sleep(config.backoff(attempt))
                attempt += 1
                continue
            if response.status_code in (500, 502, 503, 504) and attempt < config.max_retries:
                self._sleep(config.backoff(attempt))
                attempt += 1
                continue
            if response.is_error:
                # Typed, and without the URL: a presigned link is a credential for its lifetime.
                raise ResultDownloadError(response.status_code)
            return response.content

    # -- account --
    def packs(self) -> list[DPPObject]:
        """The pack types this key may run, with their input JSON schema and pricing."""
        return page_items(self._json("GET", "/v1/packs"))

    def balance(self) -> DPPObject:
        return self._json("GET", "/v1/balance")

    def usage(self, tenant_id: str | None = None, *, from_date: Any = None, to_date: Any = None) -> DPPObject:
        """Daily usage of the key's own tenant (``from_date``/``to_date``: dates or YYYY-MM-DD).
        Without ``tenant_id``, the key's tenant (read from the balance once)."""
        if tenant_id is None:
            if self._tenant_id is None:
                self._tenant_id = self.balance()["tenant_id"]
            tenant_id = self._tenant_id
        return self._json("GET", f"/v1/tenants/{tenant_id}/usage", params=_usage_params(from_date, to_date))

    def webhook_secret(self) -> str:
        """The tenant's default secret (``whsec_...``) that signs per-run webhooks."""
        return self._json("GET", "/v1/webhooks/default/secret")["key"]

    def webhook_secret_rotate(self) -> str:
        return self._json("POST", "/v1/webhooks/default/secret/rotate")["key"]

    # -- the one-call path --
    def run(self, pack_type: str, inputs: dict[str, Any], *, max_cost_usd: Money, timebox_sec: int = 90,
            webhook: dict[str, Any] | None = None, idempotency_key: str | None = None,
            wait_timeout: float | None = None) -> DPPObject:
        """Create a run, wait for it and return its result envelope (SHA-256 checked)."""
        created = self.runs.create(pack_type, inputs, max_cost_usd=max_cost_usd, timebox_sec=timebox_sec,
                                   webhook=webhook, idempotency_key=idempotency_key)
        timeout = wait_timeout if wait_timeout is not None else timebox_sec + RUN_WAIT_MARGIN_SECONDS
        finished = self.runs.wait(created["run_id"], timeout=timeout)
        return self.runs.result(finished)


class Runs:
    def __init__(self, client: Client):
        self._client = client

    def create(self, pack_type: str, inputs: dict[str, Any], *, max_cost_usd: Money, timebox_sec: int = 90,
               webhook: dict[str, Any] | None = None, idempotency_key: str | None = None) -> DPPObject:
        """Submit a run; returns the 202 answer (``run_id``, ``status``, ``poll``, ``reservation``).
        ``.replayed`` tells whether the key had already been used with this body."""
        body = run_body(pack_type, inputs, max_cost_usd=max_cost_usd, timebox_sec=timebox_sec, webhook=webhook)
        response = self._client.request("POST", "/v1/runs", json=body, idempotency_key=idempotency_key)
        run = json_of(response)
        run.replayed = response.headers.get("Idempotent-Replayed") == "true"
        return run

    def get(self, run_id: str | dict[str, Any]) -> DPPObject:
        return self._client._json("GET", f"/v1/runs/{run_id_of(run_id)}")

    def list(self, *, status: str | None = None, limit: int | None = None) -> Iterator[DPPObject]:
        """Your runs, newest first, fetched page by page as the iteration goes."""
        return self._client._iterate("/v1/runs", {"status": status, "limit": limit})

    def cancel(self, run_id: str | dict[str, Any], *, reason: str | None = None,
               idempotency_key: str | None = None) -> DPPObject:
        body = {"reason": reason} if reason is not None else None
        return self._client._json("POST", f"/v1/runs/{run_id_of(run_id)}/cancel", json=body,
                                  idempotency_key=idempotency_key)

    def wait(self, run_id: str | dict[str, Any], *, timeout: float = 90.0) -> DPPObject:
        """Poll until the run leaves QUEUED/PROCESSING; :class:`WaitTimeout` at the deadline."""
        deadline = time.monotonic() + timeout
        interval = POLL_FIRST_SECONDS
        while True:
            run = self.get(run_id)
            if run.get("status") not in ACTIVE_STATUSES:
                return run
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(run, timeout)
            self._client._sleep(min(interval, remaining))
            interval = _next_interval(interval)

    def result(self, run_id: str | dict[str, Any]) -> DPPObject:
        """Download the result envelope of a COMPLETED run and check its SHA-256."""
        run = self.get(run_id)  # fresh: presigned links expire
        if run.get("status") != "COMPLETED" or not run.get("result"):
            raise RunNotCompleted(run)
        content = self._client._download(run["result"]["presigned_url"])
        return checked_envelope(content, expected_sha256=run["result"]["sha256"], run_id=run["run_id"])


class WebhookEndpoints:
    def __init__(self, client: Client):
        self._client = client

    def create(self, url: str, *, event_types: list[str] | None = None, description: str | None = None,
               idempotency_key: str | None = None) -> DPPObject:
        """Register an endpoint; the answer carries its ``secret``, shown this once."""
        body = {"url": url, "event_types": event_types or [], "description": description or ""}
        return self._client._json("POST", "/v1/webhook_endpoints", json=body, idempotency_key=idempotency_key)

    def list(self) -> Iterator[DPPObject]:
        return self._client._iterate("/v1/webhook_endpoints", {})

    def get(self, endpoint_id: str) -> DPPObject:
        return self._client._json("GET", f"/v1/webhook_endpoints/{endpoint_id}")

    def update(self, endpoint_id: str, *, url: str | None = None, event_types: list[str] | None = None,
               enabled: bool | None = None) -> DPPObject:
        return self._client._json("PATCH", f"/v1/webhook_endpoints/{endpoint_id}",
                                  json=_webhook_endpoint_patch(url, event_types, enabled))

    def delete(self, endpoint_id: str) -> None:
        self._client.request("DELETE", f"/v1/webhook_endpoints/{endpoint_id}")

    def rotate_secret(self, endpoint_id: str) -> DPPObject:
        return self._client._json("POST", f"/v1/webhook_endpoints/{endpoint_id}/rotate_secret")

    def test(self, endpoint_id: str) -> DPPObject:
        """Send a ``webhook.test`` event to the endpoint."""
        return self._client._json("POST", f"/v1/webhook_endpoints/{endpoint_id}/test")

    def deliveries(self, endpoint_id: str, *, status: str | None = None) -> Iterator[DPPObject]:
        return self._client._iterate(f"/v1/webhook_endpoints/{endpoint_id}/deliveries", {"status": status})

    def retry_delivery(self, delivery_id: str) -> DPPObject:
        return self._client._json("POST", f"/v1/webhook_deliveries/{delivery_id}/retry")


# --- asyncio ---------------------------------------------------------------------------------


class AsyncClient(_ClientBase):
    """The async twin of :class:`Client` (asyncio or trio): the same methods, awaited (``list`` is an async iterator)."""

    _http_class = httpx.AsyncClient
    _sleep = staticmethod(anyio.sleep)  # anyio (an httpx dependency): asyncio and trio alike

    def _resources(self) -> tuple[AsyncRuns, AsyncWebhookEndpoints]:
        return AsyncRuns(self), AsyncWebhookEndpoints(self)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                      idempotency_key: str | None = None) -> httpx.Response:
        config = self._config
        headers = config.request_headers(method, idempotency_key)
        attempt = 0
        while True:
            try:
                response = await self._http.request(method, config.url(path), json=json, params=params,
                                                    headers=headers)
            except httpx.TransportError as error:
                if attempt >= config.max_retries:
                    raise APIConnectionError(f"{method} {path}: {error!r} after {attempt + 1} attempts") from error
                await self._sleep(config.backoff(attempt))
                attempt += 1
                continue
            delay = config.retry_delay(response, attempt)
            if delay is None:
                raise_for_problem(response)
                return response
            await response.aclose()
            await self._sleep(delay)
            attempt += 1

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return json_of(await self.request(method, path, **kwargs))

    async def _iterate(self, path: str, params: dict[str, Any]) -> AsyncIterator[DPPObject]:
        query: dict[str, Any] | None = {k: v for k, v in params.items() if v is not None}
        while query is not None:
            page = await self._json("GET", path, params=query)
            for item in page_items(page):
                yield item
            query = next_page_params(page)

    async def _download(self, url: str) -> bytes:
        config = self._config
        attempt = 0
        while True:
            try:
                response = await self._http.get(url)  # no API key: headers are set per API request
            except httpx.TransportError as error:
                if attempt >= config.max_retries:
                    raise APIConnectionError(f"result download: {error!r}") from error
                await self._sleep(config.backoff(attempt))
                attempt += 1
                continue
            if response.status_code in (500, 502, 503, 504) and attempt < config.max_retries:
                await self._sleep(config.backoff(attempt))
                attempt += 1
                continue
            if response.is_error:
                # Typed, and without the URL: a presigned link is a credential for its lifetime.
                raise ResultDownloadError(response.status_code)
            return response.content

    async def packs(self) -> list[DPPObject]:
        return page_items(await self._json("GET", "/v1/packs"))

    async def balance(self) -> DPPObject:
        return await self._json("GET", "/v1/balance")

    async def usage(self, tenant_id: str | None = None, *, from_date: Any = None, to_date: Any = None) -> DPPObject:
        if tenant_id is None:
            if self._tenant_id is None:
                self._tenant_id = (await self.balance())["tenant_id"]
            tenant_id = self._tenant_id
        return await self._json("GET", f"/v1/tenants/{tenant_id}/usage", params=_usage_params(from_date, to_date))

    async def webhook_secret(self) -> str:
        return (await self._json("GET", "/v1/webhooks/default/secret"))["key"]

    async def webhook_secret_rotate(self) -> str:
        return (await self._json("POST", "/v1/webhooks/default/secret/rotate"))["key"]

    async def run(self, pack_type: str, inputs: dict[str, Any], *, max_cost_usd: Money, timebox_sec: int = 90,
                  webhook: dict[str, Any] | None = None, idempotency_key: str | None = None,
                  wait_timeout: float | None = None) -> DPPObject:
        created = await self.runs.create(pack_type, inputs, max_cost_usd=max_cost_usd, timebox_sec=timebox_sec,
                                         webhook=webhook, idempotency_key=idempotency_key)
        timeout = wait_timeout if wait_timeout is not None else timebox_sec + RUN_WAIT_MARGIN_SECONDS
        finished = await self.runs.wait(created["run_id"], timeout=timeout)
        return await self.runs.result(finished)


class AsyncRuns:
    def __init__(self, client: AsyncClient):
        self._client = client

    async def create(self, pack_type: str, inputs: dict[str, Any], *, max_cost_usd: Money, timebox_sec: int = 90,
                     webhook: dict[str, Any] | None = None, idempotency_key: str | None = None) -> DPPObject:
        body = run_body(pack_type, inputs, max_cost_usd=max_cost_usd, timebox_sec=timebox_sec, webhook=webhook)
        response = await self._client.request("POST", "/v1/runs", json=body, idempotency_key=idempotency_key)
        run = json_of(response)
        run.replayed = response.headers.get("Idempotent-Replayed") == "true"
        return run

    async def get(self, run_id: str | dict[str, Any]) -> DPPObject:
        return await self._client._json("GET", f"/v1/runs/{run_id_of(run_id)}")

    def list(self, *, status: str | None = None, limit: int | None = None) -> AsyncIterator[DPPObject]:
        return self._client._iterate("/v1/runs", {"status": status, "limit": limit})

    async def cancel(self, run_id: str | dict[str, Any], *, reason: str | None = None,
                     idempotency_key: str | None = None) -> DPPObject:
        body = {"reason": reason} if reason is not None else None
        return await self._client._json("POST", f"/v1/runs/{run_id_of(run_id)}/cancel", json=body,
                                        idempotency_key=idempotency_key)

    async def wait(self, run_id: str | dict[str, Any], *, timeout: float = 90.0) -> DPPObject:
        deadline = time.monotonic() + timeout
        interval = POLL_FIRST_SECONDS
        while True:
            run = await self.get(run_id)
            if run.get("status") not in ACTIVE_STATUSES:
                return run
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(run, timeout)
            await self._client._sleep(min(interval, remaining))
            interval = _next_interval(interval)

    async def result(self, run_id: str | dict[str, Any]) -> DPPObject:
        run = await self.get(run_id)
        if run.get("status") != "COMPLETED" or not run.get("result"):
            raise RunNotCompleted(run)
        content = await self._client._download(run["result"]["presigned_url"])
        return checked_envelope(content, expected_sha256=run["result"]["sha256"], run_id=run["run_id"])


class AsyncWebhookEndpoints:
    def __init__(self, client: AsyncClient):
        self._client = client

    async def create(self, url: str, *, event_types: list[str] | None = None, description: str | None = None,
                     idempotency_key: str | None = None) -> DPPObject:
        body = {"url": url, "event_types": event_types or [], "description": description or ""}
        return await self._client._json("POST", "/v1/webhook_endpoints", json=body, idempotency_key=idempotency_key)

    def list(self) -> AsyncIterator[DPPObject]:
        return self._client._iterate("/v1/webhook_endpoints", {})

    async def get(self, endpoint_id: str) -> DPPObject:
        return await self._client._json("GET", f"/v1/webhook_endpoints/{endpoint_id}")

    async def update(self, endpoint_id: str, *, url: str | None = None, event_types: list[str] | None = None,
                     enabled: bool | None = None) -> DPPObject:
        return await self._client._json("PATCH", f"/v1/webhook_endpoints/{endpoint_id}",
                                        json=_webhook_endpoint_patch(url, event_types, enabled))

    async def delete(self, endpoint_id: str) -> None:
        await self._client.request("DELETE", f"/v1/webhook_endpoints/{endpoint_id}")

    async def rotate_secret(self, endpoint_id: str) -> DPPObject:
        return await self._client._json("POST", f"/v1/webhook_endpoints/{endpoint_id}/rotate_secret")

    async def test(self, endpoint_id: str) -> DPPObject:
        return await self._client._json("POST", f"/v1/webhook_endpoints/{endpoint_id}/test")

    def deliveries(self, endpoint_id: str, *, status: str | None = None) -> AsyncIterator[DPPObject]:
        return self._client._iterate(f"/v1/webhook_endpoints/{endpoint_id}/deliveries", {"status": status})

    async def retry_delivery(self, delivery_id: str) -> DPPObject:
        return await self._client._json("POST", f"/v1/webhook_deliveries/{delivery_id}/retry")
