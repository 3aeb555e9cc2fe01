"""GET /llms.txt in the llmstxt.org format, and every link in it answers, over real HTTP."""

from __future__ import annotations

import re

import httpx
import pytest

from dpp.problems import PROBLEM_TYPES

LINK = re.compile(r"^- \[(?P<name>[^\]]+)\]\((?P<url>[^)\s]+)\)(?::\s*(?P<notes>.+))?$")


def parse_llms_txt(text: str) -> dict:
    """The structure llmstxt.org defines: one H1, a blockquote summary, free text without
    headings, then H2 sections of ``- [name](url): notes`` lists."""
    lines = text.splitlines()
    assert lines[0].startswith("# ") and not lines[0].startswith("## "), lines[0]
    assert sum(1 for line in lines if re.match(r"^# ", line)) == 1
    summary_index = next(i for i in range(1, len(lines)) if lines[i].strip())
    assert lines[summary_index].startswith("> "), "the summary blockquote follows the title"
    sections: dict[str, list[dict]] = {}
    current = None
    for line in lines[summary_index + 1:]:
        assert not re.match(r"^#{3,} ", line), f"only H2 sections: {line}"
        if line.startswith("## "):
            current = line[3:].strip()
            sections[current] = []
        elif current is not None and line.strip():
            match = LINK.match(line)
            assert match, f"a line of section {current!r} that is not a link: {line!r}"
            sections[current].append(match.groupdict())
    return {"title": lines[0][2:], "summary": lines[summary_index][2:], "sections": sections}


@pytest.mark.django_db(transaction=True)
def test_llms_txt_parses_and_every_link_answers_200(live_server, api_key):
    response = httpx.get(f"{live_server.url}/llms.txt", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")

    parsed = parse_llms_txt(response.text)

    assert parsed["title"] == "DPP, the Decision Pack Platform"
    assert "pay-per-run" in parsed["summary"]
    assert {"Docs", "API", "Problem types", "Optional"} <= set(parsed["sections"])
    names = {link["name"] for link in parsed["sections"]["Docs"]}
    assert {"Quickstart", "MCP server setup", "OpenAPI schema"} <= names
    problem_urls = {link["url"] for link in parsed["sections"]["Problem types"]}
    assert problem_urls == {f"{live_server.url}/problems/{slug}" for slug in PROBLEM_TYPES}

    links = [link for section in parsed["sections"].values() for link in section]
    assert len(links) >= 7 + len(PROBLEM_TYPES)
    with httpx.Client(headers={"Authorization": f"Bearer {api_key}"}, timeout=10) as client:
        for link in links:
            assert link["url"].startswith(live_server.url), f"absolute links on the API's host: {link['url']}"
            answer = client.get(link["url"])
            assert answer.status_code == 200, (link, answer.status_code, answer.text[:200])
            assert answer.content


@pytest.mark.django_db
def test_the_quickstart_and_mcp_pages_name_the_host_they_were_asked_on(client, settings):
    settings.ALLOWED_HOSTS = ["api.example.test"]
    quickstart = client.get("/llms/quickstart.md", HTTP_HOST="api.example.test")
    mcp = client.get("/llms/mcp.md", HTTP_HOST="api.example.test")

    assert quickstart.status_code == mcp.status_code == 200
    assert quickstart["Content-Type"] == "text/markdown; charset=utf-8"
    assert 'Client("http://api.example.test", "dpp_live_...")' in quickstart.content.decode()
    assert '"DPP_BASE_URL": "http://api.example.test"' in mcp.content.decode()
    assert "DPP_MCP_MAX_COST_PER_CALL_USD" in mcp.content.decode()


@pytest.mark.django_db
def test_llms_txt_refuses_other_methods_with_a_problem(client):
    response = client.post("/llms.txt")
    assert response.status_code == 405 and response["Allow"] == "GET, HEAD"
    assert response.json()["type"] == "/problems/method-not-allowed"
