"""The billing API (v1): the tenant's balance. One selector call, shaped by billing/serializers.py."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from billing.selectors import wallet_get
from billing.serializers import BalanceOutput
from tenants.api import TenantAPIView


class BalanceView(TenantAPIView):
    @extend_schema(operation_id="balance_retrieve", responses={200: BalanceOutput})
    def get(self, request):
        wallet = wallet_get(tenant_id=request.user.pk)
        plan = request.user.plan
        balance = {"tenant_id": request.user.pk, "available_micros": wallet.available_micros, "held_micros": wallet.held_micros,
                   "plan": {"code": plan.code, "limits": plan.limits()}}
        return Response(BalanceOutput(balance).data)
