"""The run API (v1). Each method makes one service or selector call and shapes its answer."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from billing.money import micros_to_usd
from dpp.context import current_trace_id, set_trace_id
from dpp.errors import DomainError
from runs import serializers as s
from runs.models import Run
from runs.packs import packs_all
from runs.selectors import run_get_for_tenant, run_is_expired, runs_list_for_tenant, usage_daily_for_tenant
from runs.services import RunSubmission, run_cancel, run_create
from runs.storage import presigned_url
from tenants.api import TenantAPIView


class NotFound(DomainError):
    slug = "not-found"

    def __init__(self, detail: str = "No such run.", **kwargs):
        super().__init__(detail, **kwargs)


class Gone(DomainError):
    slug = "gone"


class InvalidIdempotencyKey(DomainError):
    slug = "invalid-idempotency-key"


class RunCursorPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 20
    page_size_query_param = "limit"
    max_page_size = 100


def _cost_headers(run: Run) -> dict[str, str]:
    headers = {
        "X-DPP-Cost-Reserved": micros_to_usd(run.reserved_micros),
        "X-DPP-Cost-Minimum-Fee": micros_to_usd(run.minimum_fee_micros),
    }
    if run.money_state in (Run.MoneyState.SETTLED, Run.MoneyState.REFUNDED) and run.actual_cost_micros is not None:
        headers["X-DPP-Cost-Actual"] = micros_to_usd(run.actual_cost_micros)
    return headers


def _results(runs) -> dict:
    """Presigned result links of completed runs whose result still exists and whose retention has
    not passed (signed locally). Past retention no endpoint hands out a link, deleted yet or not."""
    results = {}
    now = timezone.now()
    for run in runs:
        if (run.status == Run.Status.COMPLETED and run.result_key and run.result_deleted_at is None
                and not run_is_expired(run=run, now=now)):
            url, expires_at = presigned_url(bucket=run.result_bucket, key=run.result_key)
            results[run.pk] = {"presigned_url": url, "sha256": run.result_sha256, "expires_at": expires_at}
    return results


class RunCollectionView(TenantAPIView):
    problem_slugs = {"get": ("validation-error",), "post": ("invalid-idempotency-key", "idempotency-key-reused", "insufficient-balance",
                              "max-cost-exceeded", "concurrent-runs-exceeded")}

    @extend_schema(
        operation_id="runs_create",
        request=s.RunCreateInput,
        responses={202: s.RunCreatedOutput},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=True)],
    )
    def post(self, request):
        key = request.headers.get("Idempotency-Key", "")
        if not s.IDEMPOTENCY_KEY.match(key):
            raise InvalidIdempotencyKey("Send an Idempotency-Key header of 8 to 64 visible ASCII characters.")
        body = request.data
        serializer = s.RunCreateInput(data=body)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        trace_id = data.get("meta", {}).get("trace_id") or current_trace_id()
        set_trace_id(trace_id)
        reservation = data["reservation"]
        result = run_create(
            tenant=request.user,
            submission=RunSubmission(
                idempotency_key=key,
                payload_hash=s.payload_hash(body),
                pack_type=data["pack_type"],
                inputs=data["inputs"],
                max_cost_micros=reservation["max_cost_micros"],
                timebox_sec=reservation["timebox_sec"],
                min_reliability_score=reservation.get("min_reliability_score"),
                trace_id=trace_id,
                webhook=data.get("webhook"),
            ),
        )
        run = result.run
        headers = {"Location": f"/v1/runs/{run.pk}", **_cost_headers(run)}
        if result.replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(s.RunCreatedOutput(run).data, status=status.HTTP_202_ACCEPTED, headers=headers)

    @extend_schema(operation_id="runs_list", parameters=[s.RunListQuery], responses={200: s.RunPageOutput})
    def get(self, request):
        query = s.RunListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        paginator = RunCursorPagination()
        page = paginator.paginate_queryset(
            runs_list_for_tenant(tenant=request.user, status=query.validated_data.get("status")), request, view=self
        )
        data = s.RunOutput(page, many=True, context={"results": _results(page)}).data
        return paginator.get_paginated_response(data)


class RunDetailView(TenantAPIView):
    problem_slugs = {"get": ("not-found", "gone")}

    @extend_schema(operation_id="runs_retrieve", responses={200: s.RunOutput})
    def get(self, request, run_id: str):
        run = run_get_for_tenant(tenant=request.user, run_id=run_id, with_budget=True)
        if run is None:
            raise NotFound()
        if run_is_expired(run=run):
            raise Gone("This run's retention has passed; its result was deleted.")
        context = {
            "budget_remaining_micros": run.budget_remaining_micros,
            "results": _results([run]),
        }
        return Response(s.RunOutput(run, context=context).data, headers=_cost_headers(run))


class RunCancelView(TenantAPIView):
    problem_slugs = {"post": ("not-found", "run-not-cancelable")}

    @extend_schema(
        operation_id="runs_cancel",
        request=s.RunCancelInput,
        responses={200: s.RunOutput},
        description="Cancel a run. QUEUED: everything is released (REFUNDED). PROCESSING and not yet "
                    "finalizing: charged the minimum fee, the rest released (SETTLED, X-DPP-Cost-Actual). "
                    "Finalizing or finished: 409 run-not-cancelable. Already CANCELED: 200, nothing moves. "
                    "Counted under the POST rate limit.",
    )
    def post(self, request, run_id: str):
        body = s.RunCancelInput(data=request.data)
        body.is_valid(raise_exception=True)
        result = run_cancel(tenant=request.user, run_id=run_id, reason=body.validated_data.get("reason", ""))
        if result is None:
            raise NotFound()
        run = result.run
        context = {"budget_remaining_micros": run.budget_remaining_micros}
        return Response(s.RunOutput(run, context=context).data, headers=_cost_headers(run))


class PackListView(TenantAPIView):
    @extend_schema(operation_id="packs_list", responses={200: s.PackListOutput})
    def get(self, request):
        plan = request.user.plan
        packs = [
            {"pack_type": pack.pack_type, "title": pack.title, "description": pack.description,
             "input_schema": pack.input_schema, "pricing": pack.pricing()}
            for pack in packs_all() if plan.allows_pack(pack.pack_type)
        ]
        return Response({"packs": packs})


class UsageView(TenantAPIView):
    problem_slugs = {"get": ("not-found", "validation-error")}

    @extend_schema(
        operation_id="usage_retrieve",
        parameters=[OpenApiParameter("from", str, description="YYYY-MM-DD (UTC), default 30 days ago"),
                    OpenApiParameter("to", str, description="YYYY-MM-DD (UTC), default today")],
        responses={200: s.UsageOutput},
    )
    def get(self, request, tenant_id: str):
        if str(request.user.pk) != tenant_id:
            raise NotFound("No such tenant.")
        query = s.UsageQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        from_date, to_date = query.validated_data["from_date"], query.validated_data["to_date"]
        rows = usage_daily_for_tenant(tenant=request.user, from_date=from_date, to_date=to_date)
        body = {
            "tenant_id": request.user.pk, "from_date": from_date, "to_date": to_date,
            "daily_usage": [row.__dict__ for row in rows],
        }
        return Response(s.UsageOutput(body).data)
