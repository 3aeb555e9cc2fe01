"""dpp-mcp against the real stack, driven by the MCP SDK's own client: in memory, over stdio with
the installed console script, and over streamable HTTP with the caller's bearer key."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx2
import pytest
from django.core.management import call_command
from dpp_client.mcp_server import build_server
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from billing.models import Journal, Wallet
from runs.models import Run
from tenants.services import api_key_issue
from tests.clients.conftest import INITIAL_MICROS, decision_inputs
from tests.factories import TenantFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.emulator]

DPP_MCP = Path(sys.executable).parent / "dpp-mcp"


def decision_arguments(question: str = "Which database for the ledger?", **extra) -> dict:
    inputs = decision_inputs(question)
    return {"question": inputs["question"], "options": inputs["options"], "criteria": inputs["criteria"], **extra}


def call_tool(server, name: str, arguments: dict, **kwargs):
    async def scenario():
        async with Client(server) as client:
            return await client.call_tool(name, arguments, **kwargs)

    return anyio.run(scenario)


def ledger_is_green() -> bool:
    try:
        call_command("check_ledger")
    except SystemExit as exit_:
        raise AssertionError(f"check_ledger failed with {exit_.code}") from None
    return True


class TestInMemory:
    def test_run_decision_end_to_end_returns_the_decision_and_a_repeat_pays_once(
            self, live_server, worker, result_bucket, funded):
        tenant, key = funded
        server = build_server(base_url=live_server.url, api_key=key)
        first = call_tool(server, "run_decision", decision_arguments(wait_seconds=60))
        again = call_tool(server, "run_decision", decision_arguments(wait_seconds=60))

        assert not first.is_error, first.content
        result = first.structured_content
        assert result["status"] == "COMPLETED" and result["finished"] is True
        assert result["winner"] == {"id": "pg", "label": "PostgreSQL"}
        assert [row["id"] for row in result["ranking"]] == ["pg", "my"]
        assert result["margin"] > 0 and result["agreement"]["same_winner"] is True
        assert "PostgreSQL" in result["rationale"]
        assert result["cost"]["used_usd"] == "0.0104" and result["cost"]["reserved_usd"] == "0.0104"  # the quote
        assert again.structured_content["run_id"] == result["run_id"]  # same arguments, same run
        assert Run.objects.filter(tenant=tenant).count() == 1
        assert Journal.objects.filter(tenant=tenant, kind="RESERVE").count() == 1
        assert Wallet.objects.get(tenant=tenant).available_micros == INITIAL_MICROS - 10_400
        assert ledger_is_green()

    def test_a_cap_above_the_ceiling_is_refused_and_no_run_is_created(self, live_server, funded):
        tenant, key = funded
        server = build_server(base_url=live_server.url, api_key=key, max_cost_per_call_usd="0.0150")

        above_cap = call_tool(server, "run_decision", decision_arguments(max_cost_usd="0.0500"))
        full_mode = call_tool(server, "run_decision", decision_arguments(mode="full", max_cost_usd=None))
        fifty_options = call_tool(server, "run_decision", {**decision_arguments(),
                                                 "options": [{"id": f"o{i}", "label": f"O{i}",
                                                              "scores": {"cost": i, "ops": i}} for i in range(50)]})

        for refused in (above_cap, full_mode, fifty_options):
            assert refused.is_error and "ceiling" in refused.content[0].text
        assert "0.0208" in full_mode.content[0].text  # full mode doubles the 0.0104 quote
        assert "0.0200" in fifty_options.content[0].text  # 0.0100 + 100 cells x 0.0001
        assert Run.objects.filter(tenant=tenant).count() == 0
        assert Wallet.objects.get(tenant=tenant).available_micros == INITIAL_MICROS

    def test_a_run_not_finished_in_time_returns_its_id_and_get_run_and_cancel_follow_it(self, live_server, funded):
        tenant, key = funded  # no worker: the run stays QUEUED
        server = build_server(base_url=live_server.url, api_key=key)

        waiting = call_tool(server, "run_decision", decision_arguments(wait_seconds=1))
        run_id = waiting.structured_content["run_id"]
        followed = call_tool(server, "get_run", {"run_id": run_id})
        balance = call_tool(server, "get_balance", {})
        packs = call_tool(server, "list_packs", {})
        estimate = call_tool(server, "estimate_cost", {k: decision_arguments()[k] for k in ("options", "criteria")})

        assert waiting.structured_content["finished"] is False and waiting.structured_content["status"] == "QUEUED"
        assert followed.structured_content["run_id"] == run_id and followed.structured_content["status"] == "QUEUED"
        assert balance.structured_content["held_usd"] == "0.0104"
        assert "decision" in str(packs.structured_content)
        assert estimate.structured_content["cost_usd"] == "0.0104"
        assert Run.objects.get(pk=run_id).tenant_id == tenant.pk

    def test_dpp_errors_are_tool_errors_naming_the_problem(self, live_server, funded):
        server = build_server(base_url=live_server.url, api_key=funded[1])
        missing = call_tool(server, "get_run", {"run_id": "00000000-0000-4000-8000-000000000000"})
        assert missing.is_error and "/problems/not-found" in missing.content[0].text


def test_the_installed_console_script_serves_the_tools_over_stdio(live_server, funded):
    _, key = funded
    params = StdioServerParameters(command=str(DPP_MCP), args=[],
                                   env={**os.environ, "DPP_API_KEY": key, "DPP_BASE_URL": live_server.url})

    async def scenario():
        async with Client(params) as client:
            tools = await client.list_tools()
            balance = await client.call_tool("get_balance", {})
            return tools, balance

    tools, balance = anyio.run(scenario)
    assert {tool.name for tool in tools.tools} >= {"run_decision", "estimate_cost", "get_balance"}
    assert not balance.is_error and balance.structured_content["available_usd"] == "10.0000"


def test_the_console_script_without_a_key_exits_with_a_message():
    env = {k: v for k, v in os.environ.items() if k != "DPP_API_KEY"}
    done = subprocess.run([str(DPP_MCP)], env=env, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "DPP_API_KEY" in done.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_streamable_http_passes_each_callers_bearer_key_through(live_server, funded):
    _, key = funded
    other_api_key = api_key_issue(tenant=TenantFactory(balance_micros=2_500_000)).plaintext
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DPP_API_KEY"}  # the server holds no key
    server = subprocess.Popen([str(DPP_MCP), "--transport", "streamable-http", "--port", str(port),
                               "--base-url", live_server.url], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError("dpp-mcp did not start listening") from None
                time.sleep(0.2)

        async def balance_with(bearer: str | None):
            headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
            async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
                async with Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http)) as client:
                    return await client.call_tool("get_balance", {})

        mine = anyio.run(balance_with, key)
        theirs = anyio.run(balance_with, other_api_key)
        nobody = anyio.run(balance_with, None)
    finally:
        server.terminate()
        server.wait(timeout=10)

    assert mine.structured_content["available_usd"] == "10.0000"
    assert theirs.structured_content["available_usd"] == "2.5000"
    assert nobody.is_error and "Authorization: Bearer" in nobody.content[0].text
