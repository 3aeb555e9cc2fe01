"""``GET /llms.txt`` (https://llmstxt.org): what DPP is and where an agent finds the rest, as
markdown with absolute links on the host the request came to; plus the two pages it links that
have no other home on the API: the quickstart and the MCP setup. Public, like the schema."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.urls import path

from dpp.problems import PROBLEM_TYPES, problem_response

MARKDOWN = "text/markdown; charset=utf-8"


def _render(request: HttpRequest, template: str, content_type: str) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        response = problem_response(status=405, slug="method-not-allowed", request=request)
        response["Allow"] = "GET, HEAD"
        return response
    context = {
        "base": request.build_absolute_uri("/").rstrip("/"),
        "problems": [{"slug": slug, "title": problem.title, "status": problem.status,
                      "description": problem.description} for slug, problem in PROBLEM_TYPES.items()],
    }
    return HttpResponse(render_to_string(template, context), content_type=content_type)


def llms_txt(request: HttpRequest) -> HttpResponse:
    return _render(request, "llms/llms.txt", "text/plain; charset=utf-8")


def quickstart(request: HttpRequest) -> HttpResponse:
    return _render(request, "llms/quickstart.md", MARKDOWN)


def mcp_setup(request: HttpRequest) -> HttpResponse:
    return _render(request, "llms/mcp.md", MARKDOWN)


urlpatterns = [
    path("llms.txt", llms_txt, name="llms-txt"),
    path("llms/quickstart.md", quickstart, name="llms-quickstart"),
    path("llms/mcp.md", mcp_setup, name="llms-mcp"),
]
