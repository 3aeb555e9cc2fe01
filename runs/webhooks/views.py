"""The webhook API (v1, DESIGN section 7). Each method makes one service or selector call and
shapes its answer; another tenant's endpoint or delivery is the same 404 as a missing one."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from runs.webhooks import serializers as s
from runs.webhooks import services
from runs.webhooks.selectors import (
    webhook_deliveries_list_for_endpoint,
    webhook_delivery_get_for_tenant,
    webhook_endpoint_get_for_tenant,
    webhook_endpoints_list_for_tenant,
)
from tenants.api import TenantAPIView


class _NewestFirst(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 20
    page_size_query_param = "limit"
    max_page_size = 100


def _endpoint_or_404(request, endpoint_id):
    endpoint = webhook_endpoint_get_for_tenant(tenant=request.user, endpoint_id=endpoint_id)
    if endpoint is None:
        raise services.WebhookNotFound("No such webhook endpoint.")
    return endpoint


class DefaultSecretView(TenantAPIView):
    @extend_schema(operation_id="webhooks_default_secret_retrieve", responses={200: s.WebhookSecretOutput})
    def get(self, request):
        return Response({"key": services.webhook_default_secret_get(tenant_id=request.user.pk)})


class DefaultSecretRotateView(TenantAPIView):
    @extend_schema(operation_id="webhooks_default_secret_rotate", request=None, responses={200: s.WebhookSecretOutput})
    def post(self, request):
        return Response({"key": services.webhook_default_secret_rotate(tenant_id=request.user.pk)})


class EndpointCollectionView(TenantAPIView):
    problem_slugs = {"post": ("webhook-endpoint-limit-exceeded",)}

    @extend_schema(operation_id="webhook_endpoints_create", request=s.WebhookEndpointCreateInput,
                   responses={201: s.WebhookEndpointCreatedOutput})
    def post(self, request):
        data = s.WebhookEndpointCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint, secret = services.webhook_endpoint_create(tenant=request.user, **data.validated_data)
        body = {**s.WebhookEndpointOutput(endpoint).data, "secret": secret}
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": f"/v1/webhook_endpoints/{endpoint.pk}"})

    @extend_schema(operation_id="webhook_endpoints_list", responses={200: s.WebhookEndpointOutput(many=True)})
    def get(self, request):
        paginator = _NewestFirst()
        page = paginator.paginate_queryset(webhook_endpoints_list_for_tenant(tenant=request.user), request, view=self)
        return paginator.get_paginated_response(s.WebhookEndpointOutput(page, many=True).data)


class EndpointDetailView(TenantAPIView):
    problem_slugs = {"get": ("not-found",), "patch": ("not-found",), "delete": ("not-found",)}

    @extend_schema(operation_id="webhook_endpoints_retrieve", responses={200: s.WebhookEndpointOutput})
    def get(self, request, endpoint_id: str):
        return Response(s.WebhookEndpointOutput(_endpoint_or_404(request, endpoint_id)).data)

    @extend_schema(operation_id="webhook_endpoints_update", request=s.WebhookEndpointUpdateInput,
                   responses={200: s.WebhookEndpointOutput})
    def patch(self, request, endpoint_id: str):
        endpoint = _endpoint_or_404(request, endpoint_id)
        data = s.WebhookEndpointUpdateInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        endpoint = services.webhook_endpoint_update(tenant=request.user, endpoint_id=endpoint.pk, **data.validated_data)
        return Response(s.WebhookEndpointOutput(endpoint).data)

    @extend_schema(operation_id="webhook_endpoints_destroy", responses={204: None})
    def delete(self, request, endpoint_id: str):
        endpoint = _endpoint_or_404(request, endpoint_id)
        services.webhook_endpoint_delete(tenant=request.user, endpoint_id=endpoint.pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointRotateSecretView(TenantAPIView):
    problem_slugs = {"post": ("not-found",)}

    @extend_schema(operation_id="webhook_endpoints_rotate_secret", request=None,
                   responses={200: s.WebhookEndpointCreatedOutput})
    def post(self, request, endpoint_id: str):
        endpoint = _endpoint_or_404(request, endpoint_id)
        endpoint, secret = services.webhook_endpoint_rotate_secret(tenant=request.user, endpoint_id=endpoint.pk)
        return Response({**s.WebhookEndpointOutput(endpoint).data, "secret": secret})


class EndpointTestView(TenantAPIView):
    problem_slugs = {"post": ("not-found", "webhook-endpoint-disabled")}

    @extend_schema(operation_id="webhook_endpoints_test", request=None, responses={202: s.WebhookDeliveryOutput})
    def post(self, request, endpoint_id: str):
        endpoint = _endpoint_or_404(request, endpoint_id)
        delivery = services.webhook_endpoint_test(tenant=request.user, endpoint_id=endpoint.pk)
        return Response(s.WebhookDeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)


class EndpointDeliveriesView(TenantAPIView):
    problem_slugs = {"get": ("not-found", "validation-error")}

    @extend_schema(operation_id="webhook_endpoints_deliveries_list",
                   parameters=[OpenApiParameter("status", str, enum=["pending", "succeeded", "failed", "dead"])],
                   responses={200: s.WebhookDeliveryOutput(many=True)})
    def get(self, request, endpoint_id: str):
        endpoint = _endpoint_or_404(request, endpoint_id)
        query = s.WebhookDeliveryListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        paginator = _NewestFirst()
        page = paginator.paginate_queryset(
            webhook_deliveries_list_for_endpoint(tenant=request.user, endpoint=endpoint,
                                                 status=query.validated_data.get("status")), request, view=self)
        return paginator.get_paginated_response(s.WebhookDeliveryOutput(page, many=True).data)


class DeliveryRetryView(TenantAPIView):
    problem_slugs = {"post": ("not-found", "webhook-endpoint-disabled")}

    @extend_schema(operation_id="webhook_deliveries_retry", request=None, responses={202: s.WebhookDeliveryOutput})
    def post(self, request, delivery_id: str):
        delivery = webhook_delivery_get_for_tenant(tenant=request.user, delivery_id=delivery_id)
        if delivery is None:
            raise services.WebhookNotFound("No such webhook delivery.")
        delivery = services.webhook_delivery_retry(delivery_id=delivery.pk, tenant=request.user, actor="api")
        return Response(s.WebhookDeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)
