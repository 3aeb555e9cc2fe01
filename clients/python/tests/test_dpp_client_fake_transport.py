"""The client's behaviour against an httpx MockTransport (a fake server, as the names say): retries
and their bound, the Idempotency-Key kept across retries, typed errors, paging, waiting and the
result check. The same behaviour against the real stack is in tests/clients/."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

import anyio
import dpp_client
import httpx
import pytest
from dpp_client import AsyncClient, Client
from dpp_client import errors as e

BASE = "http://dpp.test"
KEY = "dpp_live_fake"
RUN_ID = "6f1c1b1e-0000-4000-8000-000000000001"
INPUTS = {"question": "q", "options": [], "criteria": []}


def problem(status: int, slug: str, *, headers: dict | None = None, **extra) -> httpx.Response:
    body = {"type": f"/problems/{slug}", "title": slug.replace("-", " "), "status": status,
            "detail": f"detail of {slug}", "instance": "/v1/x", "request_id": "req-1", **extra}
    return httpx.Response(status, json=body, headers={"Content-Type": "application/problem+json", **(headers or {})})


def created(replayed: bool = False) -> httpx.Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return httpx.Response(202, json={"run_id": RUN_ID, "status": "QUEUED"}, headers=headers)


class Script:
    """A fake server: answers from a list (a response or an exception per request), records requests."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if callable(answer) and not isinstance(answer, httpx.Response):
            answer = answer(request)
        if isinstance(answer, Exception):
            raise answer
        return answer


def client_for(script, **kwargs) -> tuple[Client, list[float]]:
    client = Client(BASE, KEY, transport=httpx.MockTransport(script), **kwargs)
    sleeps: list[float] = []
    client._sleep = sleeps.append
    return client, sleeps


class TestRetries:
    def test_a_dropped_connection_is_retried_with_the_same_idempotency_key_fake_transport(self):
        script = Script(httpx.RemoteProtocolError("Server disconnected without sending a response."), created(True))
        client, sleeps = client_for(script)

        run = client.runs.create("decision", INPUTS, max_cost_usd="0.0500")

        assert run.run_id == RUN_ID and run.replayed is True
        keys = [r.headers["Idempotency-Key"] for r in script.requests]
        assert len(keys) == 2 and keys[0] == keys[1] and 8 <= len(keys[0]) <= 64
        assert len(sleeps) == 1 and sleeps[0] > 0

    def test_the_callers_idempotency_key_is_sent_as_given_fake_transport(self):
        script = Script(created())
        client, _ = client_for(script)
        client.runs.create("decision", INPUTS, max_cost_usd="0.0500", idempotency_key="caller-key-123")
        assert script.requests[0].headers["Idempotency-Key"] == "caller-key-123"

    def test_two_calls_get_two_different_fresh_keys_fake_transport(self):
        script = Script(created(), created())
        client, _ = client_for(script)
        client.runs.create("decision", INPUTS, max_cost_usd="0.0500")
        client.runs.create("decision", INPUTS, max_cost_usd="0.0500")
        assert script.requests[0].headers["Idempotency-Key"] != script.requests[1].headers["Idempotency-Key"]

    def test_a_429_waits_its_retry_after_then_retries_fake_transport(self):
        script = Script(problem(429, "rate-limit-exceeded", headers={"Retry-After": "3"}), created())
        client, sleeps = client_for(script)

        client.runs.create("decision", INPUTS, max_cost_usd="0.0500")

        assert len(script.requests) == 2
        assert 3 <= sleeps[0] <= 3.5  # Retry-After plus a little jitter
        assert script.requests[0].headers["Idempotency-Key"] == script.requests[1].headers["Idempotency-Key"]

    def test_a_retry_after_longer_than_the_bound_raises_at_once_fake_transport(self):
        script = Script(problem(429, "concurrent-runs-exceeded", headers={"Retry-After": "600"}))
        client, sleeps = client_for(script, max_retry_wait=60)

        with pytest.raises(e.ConcurrentRunsExceeded) as raised:
            client.runs.create("decision", INPUTS, max_cost_usd="0.0500")

        assert isinstance(raised.value, e.RateLimited)
        assert raised.value.retry_after == 600 and sleeps == []

    @pytest.mark.parametrize("status", [502, 503, 504])
    def test_gateway_and_unavailable_answers_are_retried_fake_transport(self, status):
        script = Script(httpx.Response(status, text="upstream trouble"), httpx.Response(200, json={"packs": []}))
        client, sleeps = client_for(script)
        assert client.packs() == []
        assert len(script.requests) == 2 and len(sleeps) == 1

    @pytest.mark.parametrize("status,slug", [(500, "internal-error"), (400, "malformed-request"),
                                             (422, "validation-error"), (409, "idempotency-key-reused")])
    def test_other_errors_are_not_retried_fake_transport(self, status, slug):
        script = Script(problem(status, slug))
        client, sleeps = client_for(script)
        with pytest.raises(e.DPPError):
            client.runs.create("decision", INPUTS, max_cost_usd="0.0500")
        assert len(script.requests) == 1 and sleeps == []

    def test_retries_are_bounded_and_the_last_answer_is_raised_fake_transport(self):
        script = Script(*[problem(503, "service-unavailable") for _ in range(3)])
        client, sleeps = client_for(script, max_retries=2)
        with pytest.raises(e.ServiceUnavailable):
            client.balance()
        assert len(script.requests) == 3 and len(sleeps) == 2

    def test_connection_errors_past_the_bound_raise_api_connection_error_fake_transport(self):
        script = Script(*[httpx.ConnectError("refused") for _ in range(3)])
        client, sleeps = client_for(script, max_retries=2)
        with pytest.raises(e.APIConnectionError):
            client.runs.create("decision", INPUTS, max_cost_usd="0.0500")
        assert len(script.requests) == 3
        assert len({r.headers["Idempotency-Key"] for r in script.requests}) == 1

    def test_backoff_grows_is_jittered_and_capped(self):
        client, _ = client_for(Script(), backoff_base=0.5, backoff_max=4.0)
        delays = [[client._config.backoff(attempt) for _ in range(50)] for attempt in range(6)]
        assert all(0.25 <= d <= 0.5 for d in delays[0])
        assert all(2.0 <= d <= 4.0 for d in delays[5])  # capped at backoff_max
        assert len(set(delays[2])) > 1  # jittered


class TestTypedErrors:
    @pytest.mark.parametrize("status,slug,cls", [
        (401, "unauthorized", e.AuthenticationFailed),
        (402, "insufficient-balance", e.InsufficientBalance),
        (402, "max-cost-exceeded", e.MaxCostExceeded),
        (404, "not-found", e.NotFound),
        (409, "idempotency-key-reused", e.IdempotencyKeyReused),
        (409, "run-not-cancelable", e.RunNotCancelable),
        (410, "gone", e.Gone),
        (422, "validation-error", e.ValidationFailed),
        (400, "invalid-idempotency-key", e.InvalidIdempotencyKey),
    ])
    def test_each_problem_slug_raises_its_class_with_the_problem_fields_fake_transport(self, status, slug, cls):
        client, _ = client_for(Script(problem(status, slug, errors={"inputs": "bad"})), max_retries=0)
        with pytest.raises(cls) as raised:
            client.runs.get(RUN_ID)
        error = raised.value
        assert type(error) is cls and isinstance(error, dpp_client.DPPError)
        assert (error.type, error.status, error.detail, error.request_id) == (
            f"/problems/{slug}", status, f"detail of {slug}", "req-1")
        assert error.errors == {"inputs": "bad"}

    def test_an_unknown_slug_falls_back_to_the_class_of_its_status_fake_transport(self):
        client, _ = client_for(Script(problem(409, "some-new-conflict")))
        with pytest.raises(e.Conflict) as raised:
            client.runs.get(RUN_ID)
        assert raised.value.type == "/problems/some-new-conflict"

    def test_an_error_without_a_problem_document_is_still_typed_by_status_fake_transport(self):
        client, _ = client_for(Script(httpx.Response(404, text="<html>nope</html>",
                                                     headers={"X-Request-ID": "req-9"})))
        with pytest.raises(e.NotFound) as raised:
            client.runs.get(RUN_ID)
        assert raised.value.request_id == "req-9" and raised.value.type == "about:blank"


class TestMoney:
    def test_a_float_cap_is_refused_before_any_request_fake_transport(self):
        script = Script()
        client, _ = client_for(script)
        with pytest.raises(TypeError):
            client.runs.create("decision", INPUTS, max_cost_usd=0.05)
        assert script.requests == []

    def test_decimal_caps_are_sent_as_four_decimal_strings_fake_transport(self):
        script = Script(created(), created())
        client, _ = client_for(script)
        client.runs.create("decision", INPUTS, max_cost_usd=Decimal("0.05"), timebox_sec=30,
                           webhook={"url": "https://agent.example/hook"})
        body = json.loads(script.requests[0].content)
        assert body == {"pack_type": "decision", "inputs": INPUTS,
                        "reservation": {"max_cost_usd": "0.0500", "timebox_sec": 30},
                        "webhook": {"url": "https://agent.example/hook"}}
        with pytest.raises(ValueError):
            client.runs.create("decision", INPUTS, max_cost_usd=Decimal("0.00001"))


def run_doc(status: str, *, sha256: str = "", url: str = "http://s3.test/result?sig=1") -> dict:
    result = {"presigned_url": url, "sha256": sha256, "expires_at": "2026-01-01T00:00:00Z"} if sha256 else None
    return {"run_id": RUN_ID, "status": status, "money_state": "RESERVED", "cost": {}, "result": result,
            "error": None, "meta": {}}


class TestWaitAndResult:
    def test_wait_returns_on_any_status_other_than_queued_or_processing_fake_transport(self):
        script = Script(httpx.Response(200, json=run_doc("QUEUED")), httpx.Response(200, json=run_doc("PROCESSING")),
                        httpx.Response(200, json=run_doc("SOME_NEW_STATUS")))
        client, sleeps = client_for(script)
        run = client.runs.wait(RUN_ID, timeout=30)
        assert run.status == "SOME_NEW_STATUS" and len(sleeps) == 2

    def test_wait_raises_wait_timeout_at_its_deadline_fake_transport(self):
        client = Client(BASE, KEY, transport=httpx.MockTransport(lambda r: httpx.Response(200, json=run_doc("QUEUED"))))
        with pytest.raises(e.WaitTimeout) as raised:
            client.runs.wait(RUN_ID, timeout=0.3)
        assert raised.value.run_id == RUN_ID and raised.value.run["status"] == "QUEUED"

    def test_result_downloads_without_the_api_key_and_checks_the_sha256_fake_transport(self):
        envelope = json.dumps({"run_id": RUN_ID, "data": {"winner": {"id": "pg"}}}).encode()
        digest = hashlib.sha256(envelope).hexdigest()
        script = Script(httpx.Response(200, json=run_doc("COMPLETED", sha256=digest)), httpx.Response(200, content=envelope))
        client, _ = client_for(script)

        result = client.runs.result(RUN_ID)

        assert result.data.winner.id == "pg"
        download = script.requests[1]
        assert str(download.url) == "http://s3.test/result?sig=1" and "Authorization" not in download.headers

    def test_an_expired_link_raises_a_typed_error_that_does_not_show_the_link_fake_transport(self):
        script = Script(httpx.Response(200, json=run_doc("COMPLETED", sha256="0" * 64)),
                        httpx.Response(403, content=b"<Error>AccessDenied</Error>"))
        client, _ = client_for(script)
        with pytest.raises(e.ResultDownloadError) as raised:
            client.runs.result(RUN_ID)
        assert raised.value.status_code == 403 and "sig=" not in str(raised.value)
        assert isinstance(raised.value, e.DPPClientError)

    def test_request_refuses_a_url_outside_the_api_so_the_key_stays_home_fake_transport(self):
        script = Script()
        client, _ = client_for(script)
        with pytest.raises(ValueError):
            client.request("GET", "http://s3.test/result?sig=1")
        assert script.requests == []

    def test_a_result_whose_sha256_differs_raises_fake_transport(self):
        script = Script(httpx.Response(200, json=run_doc("COMPLETED", sha256="0" * 64)),
                        httpx.Response(200, content=b'{"tampered": true}'))
        client, _ = client_for(script)
        with pytest.raises(e.ResultIntegrityError):
            client.runs.result(RUN_ID)

    def test_the_result_of_a_failed_run_raises_run_not_completed_fake_transport(self):
        doc = {**run_doc("FAILED"), "error": {"reason_code": "TIMEOUT", "detail": "timebox"}}
        client, _ = client_for(Script(httpx.Response(200, json=doc)))
        with pytest.raises(e.RunNotCompleted, match="TIMEOUT"):
            client.runs.result(RUN_ID)

    def test_run_is_create_then_wait_then_result_fake_transport(self):
        envelope = b'{"status": "COMPLETED", "data": {"winner": {"id": "pg"}}}'
        digest = hashlib.sha256(envelope).hexdigest()
        script = Script(created(), httpx.Response(200, json=run_doc("PROCESSING")),
                        httpx.Response(200, json=run_doc("COMPLETED", sha256=digest)),
                        httpx.Response(200, json=run_doc("COMPLETED", sha256=digest)),
                        httpx.Response(200, content=envelope))
        client, _ = client_for(script)
        assert client.run("decision", INPUTS, max_cost_usd="0.0500")["data"]["winner"]["id"] == "pg"
        assert [r.method for r in script.requests] == ["POST", "GET", "GET", "GET", "GET"]


class TestPagingAndPaths:
    def test_list_follows_next_using_only_its_query_fake_transport(self):
        pages = {
            None: {"next": "http://other-host:9999/v1/runs?cursor=abc&limit=2", "previous": None,
                   "results": [{"run_id": "1"}, {"run_id": "2"}]},
            "abc": {"next": None, "previous": "x", "results": [{"run_id": "3"}]},
        }
        script = Script(*[lambda r: httpx.Response(200, json=pages[r.url.params.get("cursor")])] * 2)
        client, _ = client_for(script)

        ids = [run.run_id for run in client.runs.list(status="COMPLETED", limit=2)]

        assert ids == ["1", "2", "3"]
        assert all(r.url.host == "dpp.test" for r in script.requests)
        assert dict(script.requests[0].url.params) == {"status": "COMPLETED", "limit": "2"}

    def test_cancel_posts_the_reason_with_an_idempotency_key_fake_transport(self):
        script = Script(httpx.Response(200, json={**run_doc("CANCELED")}))
        client, _ = client_for(script)
        run = client.runs.cancel(RUN_ID, reason="changed my mind")
        request = script.requests[0]
        assert (request.method, request.url.path) == ("POST", f"/v1/runs/{RUN_ID}/cancel")
        assert json.loads(request.content) == {"reason": "changed my mind"} and request.headers["Idempotency-Key"]
        assert run.status == "CANCELED"

    @pytest.mark.parametrize("call,method,path,body", [
        (lambda c: c.webhook_endpoints.create("https://a.example/h", event_types=["run.completed"]), "POST",
         "/v1/webhook_endpoints", {"url": "https://a.example/h", "event_types": ["run.completed"], "description": ""}),
        (lambda c: list(c.webhook_endpoints.list()), "GET", "/v1/webhook_endpoints", None),
        (lambda c: c.webhook_endpoints.get("we_1"), "GET", "/v1/webhook_endpoints/we_1", None),
        (lambda c: c.webhook_endpoints.update("we_1", enabled=False), "PATCH", "/v1/webhook_endpoints/we_1",
         {"enabled": False}),
        (lambda c: c.webhook_endpoints.delete("we_1"), "DELETE", "/v1/webhook_endpoints/we_1", None),
        (lambda c: c.webhook_endpoints.rotate_secret("we_1"), "POST", "/v1/webhook_endpoints/we_1/rotate_secret", None),
        (lambda c: c.webhook_endpoints.test("we_1"), "POST", "/v1/webhook_endpoints/we_1/test", None),
        (lambda c: list(c.webhook_endpoints.deliveries("we_1", status="dead")), "GET",
         "/v1/webhook_endpoints/we_1/deliveries", None),
        (lambda c: c.webhook_endpoints.retry_delivery("wd_1"), "POST", "/v1/webhook_deliveries/wd_1/retry", None),
        (lambda c: c.webhook_secret(), "GET", "/v1/webhooks/default/secret", None),
        (lambda c: c.usage("t-1", from_date="2026-01-01"), "GET", "/v1/tenants/t-1/usage", None),
    ])
    def test_each_method_calls_its_endpoint_fake_transport(self, call, method, path, body):
        def answer(request):
            if request.method == "DELETE":
                return httpx.Response(204)
            return httpx.Response(200, json={"results": [], "next": None, "key": "whsec_x", "id": "we_1"})

        script = Script(answer)
        client, _ = client_for(script)
        call(client)
        request = script.requests[0]
        assert (request.method, request.url.path) == (method, path)
        assert request.headers["Authorization"] == f"Bearer {KEY}"
        assert ("Idempotency-Key" in request.headers) == (method == "POST")
        if body is not None:
            assert json.loads(request.content) == body


class TestAsyncClient:
    def test_the_async_client_retries_a_dropped_post_with_the_same_key_fake_transport(self):
        script = Script(httpx.ReadError("connection reset"), problem(503, "service-unavailable"), created(True))

        async def scenario():
            async with AsyncClient(BASE, KEY, transport=httpx.MockTransport(script), backoff_base=0.001) as client:
                return await client.runs.create("decision", INPUTS, max_cost_usd="0.0500")

        run = anyio.run(scenario)
        assert run.replayed and len(script.requests) == 3
        assert len({r.headers["Idempotency-Key"] for r in script.requests}) == 1

    def test_the_async_client_runs_pages_and_typed_errors_fake_transport(self):
        envelope = b'{"data": {"winner": {"id": "pg"}}}'
        digest = hashlib.sha256(envelope).hexdigest()
        script = Script(created(), httpx.Response(200, json=run_doc("COMPLETED", sha256=digest)),
                        httpx.Response(200, json=run_doc("COMPLETED", sha256=digest)), httpx.Response(200, content=envelope),
                        httpx.Response(200, json={"next": "http://x/v1/runs?cursor=n", "results": [{"run_id": "1"}]}),
                        httpx.Response(200, json={"next": None, "results": [{"run_id": "2"}]}),
                        problem(404, "not-found"))

        async def scenario():
            async with AsyncClient(BASE, KEY, transport=httpx.MockTransport(script)) as client:
                envelope = await client.run("decision", INPUTS, max_cost_usd="0.0500")
                ids = [run.run_id async for run in client.runs.list()]
                with pytest.raises(e.NotFound):
                    await client.runs.get("nope")
                return envelope, ids

        envelope_got, ids = anyio.run(scenario)
        assert envelope_got.data.winner.id == "pg" and ids == ["1", "2"]


def test_the_key_and_base_url_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("DPP_API_KEY", "dpp_live_env")
    monkeypatch.setenv("DPP_BASE_URL", "http://env.test/")
    client = Client()
    assert client.base_url == "http://env.test" and client._config.headers["Authorization"] == "Bearer dpp_live_env"
    monkeypatch.delenv("DPP_API_KEY")
    with pytest.raises(ValueError):
        Client()


class TestUsageOfTheKeysOwnTenant:
    BALANCE = {"tenant_id": "t-7", "available_usd": "1.0000", "held_usd": "0.0000", "currency": "USD",
               "plan": {"code": "free", "limits": {}}}
    USAGE = {"tenant_id": "t-7", "daily_usage": []}

    def test_usage_without_a_tenant_reads_it_from_the_balance_once_fake_transport(self):
        script = Script(httpx.Response(200, json=self.BALANCE), httpx.Response(200, json=self.USAGE),
                        httpx.Response(200, json=self.USAGE))
        client, _ = client_for(script)
        assert client.usage().tenant_id == "t-7"
        assert client.usage(from_date="2026-01-01").tenant_id == "t-7"
        assert [r.url.path for r in script.requests] == ["/v1/balance", "/v1/tenants/t-7/usage",
                                                         "/v1/tenants/t-7/usage"]

    def test_an_explicit_tenant_is_not_remembered_as_the_keys_own_fake_transport(self):
        script = Script(httpx.Response(200, json=self.USAGE), httpx.Response(200, json=self.BALANCE),
                        httpx.Response(200, json=self.USAGE))
        client, _ = client_for(script)
        client.usage("t-other")
        client.usage()
        assert [r.url.path for r in script.requests] == ["/v1/tenants/t-other/usage", "/v1/balance",
                                                         "/v1/tenants/t-7/usage"]

    def test_the_async_client_does_the_same_fake_transport(self):
        script = Script(httpx.Response(200, json=self.BALANCE), httpx.Response(200, json=self.USAGE))

        async def main():
            async with AsyncClient(BASE, KEY, transport=httpx.MockTransport(script)) as client:
                return await client.usage()

        assert anyio.run(main).tenant_id == "t-7"
        assert [r.url.path for r in script.requests] == ["/v1/balance", "/v1/tenants/t-7/usage"]
