"""Throwaway routes for testing cross-cutting behaviour (mounted with @pytest.mark.urls)."""

from django.http import HttpResponse
from django.urls import include, path
from rest_framework.response import Response
from rest_framework.views import APIView

from dpp.errors import DomainError


class Teapot(DomainError):
    status = 418
    slug = "bad-request"
    title = "I am a teapot"


class Boom(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    def get(self, request):
        raise RuntimeError("unexpected")

    def post(self, request):
        return Response({"received": request.data})


class DomainBoom(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    def get(self, request):
        raise Teapot("short and stout", errors={"spout": "missing"})


def plain_boom(request):
    raise RuntimeError("unexpected in a plain view")


def plain_ok(request):
    return HttpResponse("ok")


urlpatterns = [
    path("boom", Boom.as_view()),
    path("domain-boom", DomainBoom.as_view()),
    path("plain-boom", plain_boom),
    path("plain-ok", plain_ok),
    path("", include("dpp.urls")),
]

handler400 = "dpp.problems.handler400"
handler403 = "dpp.problems.handler403"
handler404 = "dpp.problems.handler404"
handler500 = "dpp.problems.handler500"
