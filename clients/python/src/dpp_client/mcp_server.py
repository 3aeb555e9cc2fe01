"""``dpp-mcp``: DPP as MCP tools, for agent hosts. It talks to DPP through :class:`AsyncClient`
(never to a database), so it needs only a base URL and an API key.

- stdio (the default): ``DPP_API_KEY`` and ``DPP_BASE_URL`` from the environment;
- ``--transport streamable-http --port P``: every request must carry ``Authorization: Bearer
  <DPP API key>``, which is passed through to DPP; the server holds no key of its own.

``DPP_MCP_MAX_COST_PER_CALL_USD`` (default ``0.5000``) is a hard ceiling per tool call: a
``run_decision`` whose spend cap is above it is refused before any run is created.
``run_decision`` derives its Idempotency-Key from its arguments (the decision pack is
deterministic), so a host that repeats a call gets the same run and pays once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

import anyio
import httpx
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from dpp_client import __version__
from dpp_client._client import AsyncClient
from dpp_client._core import ACTIVE_STATUSES
from dpp_client.errors import DPPClientError, DPPError

DEFAULT_MAX_COST_PER_CALL_USD = "0.5000"
DECISION_TIMEBOX_SEC = 90
MAX_WAIT_SECONDS = 300
FOUR_PLACES = Decimal("0.0001")

INSTRUCTIONS = (
    "DPP runs decision analyses for a small fee from a prepaid balance. estimate_cost tells the price "
    "first; run_decision submits one and waits for it (repeating the same call returns the same run "
    "and charges once); get_run follows a run that was not finished in time."
)


# --- tool argument and result shapes (they become the tools' JSON schemas) ---------------------


class Option(BaseModel):
    id: str = Field(min_length=1, max_length=64, description="Short identifier, unique among the options")
    label: str = Field(min_length=1, max_length=200, description="Human-readable name")
    scores: dict[str, float] = Field(description="Score on every criterion, keyed by criterion id")


class Criterion(BaseModel):
    id: str = Field(min_length=1, max_length=64, description="Short identifier, unique among the criteria")
    weight: float = Field(ge=0, description="Relative importance (>= 0; weights are normalised)")
    direction: Literal["benefit", "cost"] = Field(
        default="benefit", description="benefit: higher scores are better; cost: lower scores are better")


class CostEstimate(BaseModel):
    pack_type: str
    mode: str
    cells: int = Field(description="options x criteria")
    cost_usd: str = Field(description="The price of this analysis (a 4-decimal USD string)")
    ceiling_usd: str = Field(description="This server's ceiling per call (DPP_MCP_MAX_COST_PER_CALL_USD)")
    within_ceiling: bool


class RankedOption(BaseModel):
    id: str
    label: str
    weighted_score: float
    topsis_score: float
    weighted_rank: int
    topsis_rank: int


class DecisionResult(BaseModel):
    run_id: str
    status: str = Field(description="QUEUED or PROCESSING when not finished in time; else terminal")
    finished: bool
    idempotency_key: str
    winner: dict[str, Any] | None = None
    runner_up: dict[str, Any] | None = None
    ranking: list[RankedOption] | None = None
    margin: float | None = None
    agreement: dict[str, Any] | None = None
    deciding_criteria: list[dict[str, Any]] | None = None
    sensitivity: list[dict[str, Any]] | None = None
    rationale: str | None = None
    cost: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    message: str = ""


# --- helpers ------------------------------------------------------------------------------------


def _decimal_usd(value: str, *, name: str) -> Decimal:
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ToolError(f"{name} must be a decimal USD amount such as '0.0500'") from None
    if not amount.is_finite() or amount < 0 or amount != amount.quantize(FOUR_PLACES):
        raise ToolError(f"{name} must be a non-negative USD amount with at most 4 decimals")
    return amount


def _usd(amount: Decimal) -> str:
    return f"{amount.quantize(FOUR_PLACES):.4f}"


def derived_idempotency_key(body: dict[str, Any]) -> str:
    """The same arguments give the same key (and so the same run): 'mcp-' + 52 hex of SHA-256."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "mcp-" + hashlib.sha256(canonical.encode()).hexdigest()[:52]


def decision_quote(pricing: dict[str, Any], *, cells: int, mode: str) -> Decimal:
    """The decision pack's price from the pricing that GET /v1/packs publishes."""
    try:
        amount = Decimal(pricing["base_usd"]) + Decimal(pricing["per_cell_usd"]) * cells
        multiplier = int(pricing.get("full_mode_multiplier", 1))
    except (KeyError, InvalidOperation, TypeError, ValueError):
        raise ToolError("the server's pricing of the decision pack is not understood") from None
    return amount * multiplier if mode == "full" else amount


def _tool_error(error: DPPClientError) -> ToolError:
    if isinstance(error, DPPError):
        return ToolError(f"DPP answered {error.status} {error.title}: {error.detail} "
                         f"(type {error.type}, request_id {error.request_id})")
    return ToolError(f"DPP could not be reached: {error}")


# --- the server ---------------------------------------------------------------------------------


def build_server(*, base_url: str | None = None, api_key: str | None = None, require_bearer: bool = False,
                 max_cost_per_call_usd: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> MCPServer:
    """The MCP server. With ``require_bearer`` (streamable HTTP) each request's own bearer key is
    used and ``api_key`` is ignored; otherwise ``api_key`` (or ``DPP_API_KEY``) serves every call."""
    base_url = base_url or os.environ.get("DPP_BASE_URL") or "http://127.0.0.1:8000"
    ceiling = _decimal_usd(
        max_cost_per_call_usd or os.environ.get("DPP_MCP_MAX_COST_PER_CALL_USD") or DEFAULT_MAX_COST_PER_CALL_USD,
        name="DPP_MCP_MAX_COST_PER_CALL_USD")
    server = MCPServer("dpp", title="DPP, the Decision Pack Platform", instructions=INSTRUCTIONS,
                       version=__version__)

    def client_for(ctx: Context) -> AsyncClient:
        if require_bearer:
            headers = ctx.headers or {}
            authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
            scheme, _, key = authorization.partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                raise ToolError("send your DPP API key as 'Authorization: Bearer dpp_live_...' to this MCP server")
            return AsyncClient(base_url, key.strip(), transport=transport)
        key = api_key or os.environ.get("DPP_API_KEY")
        if not key:
            raise ToolError("DPP_API_KEY is not set for this MCP server")
        return AsyncClient(base_url, key, transport=transport)

    async def decision_pricing(client: AsyncClient) -> dict[str, Any]:
        for pack in await client.packs():
            if pack.get("pack_type") == "decision":
                return pack.get("pricing") or {}
        raise ToolError("the decision pack is not available to this API key")

    read_only = ToolAnnotations(readOnlyHint=True, openWorldHint=False)

    @server.tool(annotations=read_only)
    async def list_packs(ctx: Context) -> list[dict[str, Any]]:
        """The pack types your key may run, with their input JSON schema and pricing."""
        async with client_for(ctx) as client:
            try:
                return [dict(pack) for pack in await client.packs()]
            except DPPClientError as error:
                raise _tool_error(error) from error

    @server.tool(annotations=read_only)
    async def estimate_cost(
        options: Annotated[list[Option], Field(min_length=2, max_length=50)],
        criteria: Annotated[list[Criterion], Field(min_length=1, max_length=30)],
        ctx: Context,
        mode: Literal["brief", "full"] = "brief",
    ) -> CostEstimate:
        """The price of a decision analysis of these options and criteria, before running it."""
        async with client_for(ctx) as client:
            try:
                pricing = await decision_pricing(client)
            except DPPClientError as error:
                raise _tool_error(error) from error
        cells = len(options) * len(criteria)
        cost = decision_quote(pricing, cells=cells, mode=mode)
        return CostEstimate(pack_type="decision", mode=mode, cells=cells, cost_usd=_usd(cost),
                            ceiling_usd=_usd(ceiling), within_ceiling=cost <= ceiling)

    @server.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=True,
                                             openWorldHint=False))
    async def run_decision(
        question: Annotated[str, Field(min_length=1, max_length=2000, description="The decision to make")],
        options: Annotated[list[Option], Field(min_length=2, max_length=50)],
        criteria: Annotated[list[Criterion], Field(min_length=1, max_length=30)],
        ctx: Context,
        context: Annotated[str | None, Field(max_length=20000)] = None,
        mode: Literal["brief", "full"] = "brief",
        max_cost_usd: Annotated[str | None, Field(
            description="Spend cap, e.g. '0.0500'; default: the quote. Above the server's ceiling: refused")] = None,
        wait_seconds: Annotated[int, Field(ge=0, le=MAX_WAIT_SECONDS)] = 60,
        idempotency_key: Annotated[str | None, Field(
            min_length=8, max_length=64, description="Default: derived from the arguments (same call, same run)")] = None,
    ) -> DecisionResult:
        """Rank options against weighted criteria (weighted sum and TOPSIS) and explain the winner.
        Charges the quoted price from your DPP balance; waits up to wait_seconds, and when the run is
        not finished by then returns its run_id (follow it with get_run)."""
        inputs: dict[str, Any] = {
            "question": question, "mode": mode,
            "options": [option.model_dump() for option in options],
            "criteria": [criterion.model_dump() for criterion in criteria],
        }
        if context:
            inputs["context"] = context
        async with client_for(ctx) as client:
            try:
                if max_cost_usd is None:
                    cap = decision_quote(await decision_pricing(client),
                                         cells=len(options) * len(criteria), mode=mode)
                else:
                    cap = _decimal_usd(max_cost_usd, name="max_cost_usd")
                if cap > ceiling:
                    raise ToolError(f"this analysis costs {_usd(cap)}, above this server's ceiling of "
                                    f"{_usd(ceiling)} per call (DPP_MCP_MAX_COST_PER_CALL_USD); no run was created")
                key = idempotency_key or derived_idempotency_key(
                    {"pack_type": "decision", "inputs": inputs, "max_cost_usd": _usd(cap),
                     "timebox_sec": DECISION_TIMEBOX_SEC})
                created = await client.runs.create("decision", inputs, max_cost_usd=_usd(cap),
                                                   timebox_sec=DECISION_TIMEBOX_SEC, idempotency_key=key)
                run = await _wait_with_progress(client, ctx, run_id=str(created["run_id"]), wait_seconds=wait_seconds)
                return await _decision_result(client, run, key=key)
            except DPPClientError as error:
                raise _tool_error(error) from error

    @server.tool(annotations=read_only)
    async def get_run(run_id: Annotated[str, Field(description="The run_id returned by run_decision")],
                      ctx: Context) -> DecisionResult:
        """A run's status, costs and, once it completed, its decision result."""
        async with client_for(ctx) as client:
            try:
                run = await client.runs.get(run_id)
                return await _decision_result(client, run, key="")
            except DPPClientError as error:
                raise _tool_error(error) from error

    @server.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=True,
                                             openWorldHint=False))
    async def cancel_run(run_id: str, ctx: Context,
                         reason: Annotated[str | None, Field(max_length=200)] = None) -> dict[str, Any]:
        """Cancel a run that has not finished: a queued run is fully refunded; a started one is
        charged the minimum fee. A finished run cannot be canceled."""
        async with client_for(ctx) as client:
            try:
                return dict(await client.runs.cancel(run_id, reason=reason))
            except DPPClientError as error:
                raise _tool_error(error) from error

    @server.tool(annotations=read_only)
    async def get_balance(ctx: Context) -> dict[str, Any]:
        """Your available and held balance (USD), and your plan's limits."""
        async with client_for(ctx) as client:
            try:
                balance = dict(await client.balance())
            except DPPClientError as error:
                raise _tool_error(error) from error
        balance["mcp_ceiling_per_call_usd"] = _usd(ceiling)
        return balance

    return server


async def _wait_with_progress(client: AsyncClient, ctx: Context, *, run_id: str, wait_seconds: int) -> dict[str, Any]:
    started = time.monotonic()
    interval = 0.25
    while True:
        run = await client.runs.get(run_id)
        elapsed = time.monotonic() - started
        if run.get("status") not in ACTIVE_STATUSES or elapsed >= wait_seconds:
            return run
        await ctx.report_progress(min(elapsed, wait_seconds), wait_seconds, f"run {run_id} is {run.get('status')}")
        await anyio.sleep(min(interval, max(0.0, wait_seconds - elapsed)))
        interval = min(1.5, interval * 1.6)


async def _decision_result(client: AsyncClient, run: dict[str, Any], *, key: str) -> DecisionResult:
    status = str(run.get("status"))
    result = DecisionResult(run_id=str(run["run_id"]), status=status, finished=status not in ACTIVE_STATUSES,
                            idempotency_key=key, cost=dict(run.get("cost") or {}) or None,
                            error=dict(run["error"]) if run.get("error") else None)
    if status in ACTIVE_STATUSES:
        result.message = f"The run is {status}; call get_run with run_id {result.run_id} to follow it."
        return result
    if status != "COMPLETED":
        result.message = f"The run finished as {status}."
        return result
    envelope = await client.runs.result(run)
    data = envelope.get("data") or {}
    result.winner = data.get("winner")
    result.runner_up = data.get("runner_up")
    result.ranking = [RankedOption(**row) for row in data.get("ranking") or []]
    result.margin = data.get("margin")
    result.agreement = data.get("agreement")
    result.deciding_criteria = data.get("deciding_criteria")
    result.sensitivity = data.get("sensitivity")
    result.rationale = data.get("rationale")
    result.cost = {**(result.cost or {}), **dict(envelope.get("cost") or {})}
    result.message = "Completed."
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dpp-mcp", description="DPP as MCP tools (stdio by default).")
    parser.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    parser.add_argument("--host", default="127.0.0.1", help="streamable-http: address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8765, help="streamable-http: port (default 8765)")
    parser.add_argument("--base-url", default=None, help="the DPP API (default DPP_BASE_URL or http://127.0.0.1:8000)")
    args = parser.parse_args(argv)
    if args.transport == "stdio":
        if not os.environ.get("DPP_API_KEY"):
            print("dpp-mcp: set DPP_API_KEY (and DPP_BASE_URL) in the environment", file=sys.stderr)
            return 2
        build_server(base_url=args.base_url).run("stdio")
    else:
        build_server(base_url=args.base_url, require_bearer=True).run(
            "streamable-http", host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
