"""Throwaway routes for testing cross-cutting behaviour (mounted with @pytest.mark.urls), in
front of the project's own routes."""

from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import Http404, HttpResponse
from django.urls import include, path
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from dpp.errors import DomainError


class KeyReused(DomainError):
    slug = "idempotency-key-reused"


class OpenAPIView(APIView):
    authentication_classes: list = []
    permission_classes: list = []


class Echo(OpenAPIView):
    """GET raises an unexpected error; POST parses its JSON body and echoes it."""

    def get(self, request):
        raise RuntimeError("unexpected: secret internals")

    def post(self, request):
        return Response({"received": request.data})


class GetOnly(OpenAPIView):
    def get(self, request):
        return Response({"ok": True})


class RaisesDomainError(OpenAPIView):
    def get(self, request):
        raise KeyReused("Another body used this key.", headers={"X-Example": "yes"}, errors={"body": "differs"})


class RaisesHttp404(OpenAPIView):
    def get(self, request):
        raise Http404("no such thing")


class RaisesPermissionDenied(OpenAPIView):
    def get(self, request):
        raise PermissionDenied


class NeedsAName(serializers.Serializer):
    name = serializers.CharField(max_length=5)


class Validates(OpenAPIView):
    def post(self, request):
        NeedsAName(data=request.data).is_valid(raise_exception=True)
        return Response({"ok": True})


def plain_boom(request):
    raise RuntimeError("unexpected in a plain view")


def plain_ok(request):
    return HttpResponse("ok")


def plain_db(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok")


urlpatterns = [
    path("echo", Echo.as_view()),
    path("get-only", GetOnly.as_view()),
    path("domain-error", RaisesDomainError.as_view()),
    path("http404", RaisesHttp404.as_view()),
    path("permission-denied", RaisesPermissionDenied.as_view()),
    path("validates", Validates.as_view()),
    path("plain-boom", plain_boom),
    path("plain-ok", plain_ok),
    path("plain-db", plain_db),
    path("", include("dpp.urls")),
]

handler400 = "dpp.problems.handler400"
handler403 = "dpp.problems.handler403"
handler404 = "dpp.problems.handler404"
handler500 = "dpp.problems.handler500"
