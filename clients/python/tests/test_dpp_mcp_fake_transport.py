"""The MCP server through the SDK's own in-memory client, with DPP faked by an httpx MockTransport
(as the names say). The same server against the real stack is in tests/clients/test_mcp_server.py."""

from __future__ import annotations

import hashlib
import json

import anyio
import httpx
import pytest
from dpp_client.mcp_server import build_server, derived_idempotency_key
from mcp import Client

RUN_ID = "6f1c1b1e-0000-4000-8000-000000000002"
PACKS = {"packs": [{"pack_type": "decision", "title": "Decision", "description": "", "input_schema": {},
                    "pricing": {"currency": "USD", "base_usd": "0.0100", "per_cell_usd": "0.0001",
                                "full_mode_multiplier": 2}}]}
ENVELOPE = json.dumps({"status": "COMPLETED", "cost": {"reserved_usd": "0.0104", "used_usd": "0.0104"},
                       "data": {"winner": {"id": "pg", "label": "PostgreSQL"}, "runner_up": {"id": "my", "label": "MySQL"},
                                "margin": 0.4, "agreement": {"same_winner": True, "topsis_winner": "pg", "spearman": 1.0},
                                "ranking": [{"id": "pg", "label": "PostgreSQL", "weighted_score": 1.0, "topsis_score": 0.9,
                                             "weighted_rank": 1, "topsis_rank": 1},
                                            {"id": "my", "label": "MySQL", "weighted_score": 0.6, "topsis_score": 0.1,
                                             "weighted_rank": 2, "topsis_rank": 2}],
                                "deciding_criteria": [{"id": "cost", "contribution": 0.6}], "sensitivity": None,
                                "rationale": "PostgreSQL wins."}}).encode()
ARGS = {"question": "Which database?",
        "options": [{"id": "pg", "label": "PostgreSQL", "scores": {"cost": 9, "ops": 7}},
                    {"id": "my", "label": "MySQL", "scores": {"cost": 8, "ops": 6}}],
        "criteria": [{"id": "cost", "weight": 0.6}, {"id": "ops", "weight": 0.4, "direction": "benefit"}]}


class FakeDPP:
    """Answers the few endpoints the tools use; a run completes after ``polls_before_done`` GETs."""

    def __init__(self, *, polls_before_done: int = 1):
        self.requests: list[httpx.Request] = []
        self.polls_before_done = polls_before_done
        self.gets = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/v1/packs":
            return httpx.Response(200, json=PACKS)
        if path == "/v1/runs" and request.method == "POST":
            return httpx.Response(202, json={"run_id": RUN_ID, "status": "QUEUED"})
        if path == f"/v1/runs/{RUN_ID}":
            self.gets += 1
            done = self.gets > self.polls_before_done
            result = {"presigned_url": "http://s3.test/env", "sha256": hashlib.sha256(ENVELOPE).hexdigest(),
                      "expires_at": "2026-01-01T00:00:00Z"} if done else None
            return httpx.Response(200, json={"run_id": RUN_ID, "status": "COMPLETED" if done else "PROCESSING",
                                             "cost": {"reserved_usd": "0.0104"}, "result": result, "error": None})
        if path == "/env":
            return httpx.Response(200, content=ENVELOPE)
        if path == "/v1/balance":
            return httpx.Response(200, json={"available_usd": "9.0000", "held_usd": "0.0000", "currency": "USD"})
        return httpx.Response(404, json={"type": "/problems/not-found", "title": "Not found", "status": 404,
                                         "detail": "No such run.", "request_id": "r"})

    def posts(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == "POST"]


def call(server, name: str, arguments: dict, **kwargs):
    async def scenario():
        async with Client(server) as client:
            return await client.call_tool(name, arguments, **kwargs)

    return anyio.run(scenario)


def server_with(fake: FakeDPP, **kwargs):
    return build_server(base_url="http://dpp.test", api_key="dpp_live_fake", transport=httpx.MockTransport(fake),
                        **kwargs)


def test_the_tools_are_listed_with_typed_input_schemas_and_annotations_fake_transport():
    async def scenario():
        async with Client(server_with(FakeDPP())) as client:
            return (await client.list_tools()).tools

    tools = {tool.name: tool for tool in anyio.run(scenario)}

    assert set(tools) == {"list_packs", "estimate_cost", "run_decision", "get_run", "cancel_run", "get_balance"}
    schema = tools["run_decision"].input_schema
    assert schema["required"] == ["question", "options", "criteria"]
    assert schema["properties"]["mode"]["enum"] == ["brief", "full"]
    assert schema["properties"]["options"]["minItems"] == 2
    assert tools["run_decision"].output_schema["properties"]["winner"]
    assert tools["get_balance"].annotations.read_only_hint is True
    assert tools["cancel_run"].annotations.destructive_hint is True
    assert tools["run_decision"].annotations.idempotent_hint is True


def test_run_decision_submits_waits_with_progress_and_returns_the_decision_fake_transport():
    fake = FakeDPP(polls_before_done=2)
    progress: list[tuple] = []

    async def on_progress(value, total, message):
        progress.append((value, total, message))

    result = call(server_with(fake), "run_decision", ARGS, progress_callback=on_progress)

    assert not result.is_error, result.content
    data = result.structured_content
    assert data["run_id"] == RUN_ID and data["status"] == "COMPLETED" and data["finished"] is True
    assert data["winner"]["id"] == "pg" and [row["id"] for row in data["ranking"]] == ["pg", "my"]
    assert data["rationale"] == "PostgreSQL wins." and data["cost"]["used_usd"] == "0.0104"
    body = json.loads(fake.posts()[0].content)
    assert body["reservation"]["max_cost_usd"] == "0.0104"  # the quote: 0.0100 + 4 cells x 0.0001
    assert progress and all(total == 60 for _, total, _ in progress)


def test_the_same_arguments_send_the_same_derived_key_fake_transport():
    fake = FakeDPP(polls_before_done=0)
    server = server_with(fake)
    call(server, "run_decision", ARGS)
    call(server, "run_decision", {**ARGS, "wait_seconds": 5})  # waiting longer or shorter is the same run
    call(server, "run_decision", {**ARGS, "question": "Another question?"})
    keys = [r.headers["Idempotency-Key"] for r in fake.posts()]
    assert keys[0] == keys[1] != keys[2]
    assert keys[0].startswith("mcp-") and len(keys[0]) <= 64
    assert derived_idempotency_key({"a": 1, "b": 2}) == derived_idempotency_key({"b": 2, "a": 1})


def test_a_cap_above_the_ceiling_is_a_tool_error_and_creates_no_run_fake_transport():
    fake = FakeDPP()
    result = call(server_with(fake, max_cost_per_call_usd="0.0500"), "run_decision", {**ARGS, "max_cost_usd": "0.0600"})
    assert result.is_error and "ceiling" in result.content[0].text
    assert fake.requests == []  # refused before any call to DPP


def test_a_quote_above_the_ceiling_is_refused_without_creating_a_run_fake_transport():
    fake = FakeDPP()
    result = call(server_with(fake, max_cost_per_call_usd="0.0100"), "run_decision", ARGS)
    assert result.is_error and "0.0104" in result.content[0].text
    assert fake.posts() == []


def test_a_run_not_finished_in_time_returns_its_run_id_fake_transport():
    fake = FakeDPP(polls_before_done=10_000)
    result = call(server_with(fake), "run_decision", {**ARGS, "wait_seconds": 1})
    assert not result.is_error
    assert result.structured_content["run_id"] == RUN_ID
    assert result.structured_content["finished"] is False and "get_run" in result.structured_content["message"]


def test_estimate_cost_uses_the_published_pricing_fake_transport():
    result = call(server_with(FakeDPP()), "estimate_cost", {**{k: ARGS[k] for k in ("options", "criteria")},
                                                            "mode": "full"})
    assert result.structured_content["cost_usd"] == "0.0208" and result.structured_content["within_ceiling"] is True


def test_dpp_errors_become_tool_errors_naming_the_problem_fake_transport():
    result = call(server_with(FakeDPP()), "get_run", {"run_id": "not-a-run"})
    assert result.is_error and "/problems/not-found" in result.content[0].text


@pytest.mark.parametrize("tool,arguments", [("get_balance", {}), ("list_packs", {})])
def test_http_mode_refuses_a_call_without_a_bearer_key_fake_transport(tool, arguments):
    fake = FakeDPP()
    result = call(server_with(fake, require_bearer=True), tool, arguments)
    assert result.is_error and "Authorization: Bearer" in result.content[0].text
    assert fake.requests == []
