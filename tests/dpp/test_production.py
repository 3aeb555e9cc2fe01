"""Production settings from the environment (README "Running it for real"): `check --deploy` is
clean, the admin works behind a TLS proxy, its static files are served by the app with DEBUG off,
and nothing runs with the repository's development secrets. Each case boots Django in a fresh
interpreter with exactly the environment given."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.conf import settings

REPO = Path(__file__).resolve().parents[2]


def production_environment(**overrides) -> dict[str, str]:
    """The complete production environment the README describes (real AWS: no endpoints)."""
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("DPP_", "DJANGO_", "AWS_", "CORS_", "CSRF_", "ALLOWED_HOSTS", "LOG_LEVEL"))}
    environment.update({
        "DPP_ENV": "production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DPP_KEY_PEPPER": secrets.token_urlsafe(32),
        "DPP_WEBHOOK_ENCRYPTION_KEY": secrets.token_urlsafe(32),
        "ALLOWED_HOSTS": "dpp.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://dpp.example.com",
        "DPP_TRUST_X_FORWARDED_PROTO": "true",
        "DATABASE_URL": "postgres://dpp:secret@db.internal.example.com:5432/dpp",
        "REDIS_URL": "redis://cache.internal.example.com:6379/0",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "DPP_QUEUE_NAME": "dpp-runs",
        "DPP_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/dpp-runs",
        "DPP_PERIODIC_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/dpp-runs-periodic",
        "DPP_WEBHOOK_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/dpp-webhooks",
        "DPP_RESULT_BUCKET": "dpp-results-example",
    })
    environment.update(overrides)
    return environment


def python(code: str, environment: dict[str, str]) -> subprocess.CompletedProcess:
    prelude = "import os, django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'dpp.settings'); django.setup()\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=120)


def test_check_deploy_is_clean_for_the_complete_production_environment():
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=REPO,
                            env=production_environment(), capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_fails_without_the_tls_settings():
    environment = production_environment(DPP_SECURE_COOKIES="false", DPP_HSTS_SECONDS="0")

    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=REPO,
                            env=environment, capture_output=True, text=True, timeout=120)

    assert result.returncode != 0
    assert "security.W004" in result.stderr and "security.W012" in result.stderr


def test_production_sets_secure_cookies_hsts_proxy_trust_and_predefined_queues():
    result = python("""
        from django.conf import settings as s
        o = s.CELERY_BROKER_TRANSPORT_OPTIONS
        print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS > 0, s.SECURE_SSL_REDIRECT,
              s.SECURE_PROXY_SSL_HEADER == ('HTTP_X_FORWARDED_PROTO', 'https'), s.CSRF_TRUSTED_ORIGINS,
              o['predefined_queues'], o['client-config']['connect_timeout'],
              o['client-config']['read_timeout'] > o['wait_time_seconds'], s.CELERY_BROKER_TRANSPORT)
    """, production_environment())

    assert result.returncode == 0, result.stderr
    assert result.stdout.split(" ", 6)[:6] == ["True", "True", "True", "True", "True", "['https://dpp.example.com']"]
    for queue in ("dpp-runs", "dpp-runs-periodic", "dpp-webhooks"):
        assert f"'{queue}': {{'url': 'https://sqs.eu-west-1.amazonaws.com/123456789012/{queue}'}}" in result.stdout
    assert result.stdout.split()[-3:] == ["2", "True", "dpp.sqs_transport:Transport"]


@pytest.mark.parametrize("database_url", [
    pytest.param("postgres://postgres@127.0.0.1:5432/dpp", id="loopback address"),
    pytest.param("postgres://postgres@localhost/dpp", id="localhost"),
    pytest.param("postgres://postgres@%2Fvar%2Frun%2Fpostgresql/dpp", id="unix socket"),
])
def test_no_dpp_env_with_a_local_database_is_development(database_url):
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DPP_", "DJANGO_", "AWS_"))}
    environment["DATABASE_URL"] = database_url

    result = python("from django.conf import settings as s; print(s.DPP_ENV, s.SESSION_COOKIE_SECURE)", environment)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["development", "False"]


@pytest.mark.django_db(transaction=True)
def test_admin_login_and_static_files_work_behind_a_tls_proxy_with_debug_off(tmp_path, django_user_model):
    """The admin's login (a CSRF-protected POST, like the Resolve form) through a proxy that
    terminates TLS, on the test database, with static files collected as production does."""
    django_user_model.objects.create_superuser("operator", "op@example.com", "a-long-password-1")
    database = settings.DATABASES["default"]
    environment = production_environment(
        DATABASE_URL=f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        REDIS_URL=settings.REDIS_URL, DPP_STATIC_ROOT=str(tmp_path / "static"),
    )
    collected = subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=REPO,
                               env=environment, capture_output=True, text=True, timeout=120)
    assert collected.returncode == 0, collected.stderr

    result = python("""
        import re
        from django.conf import settings as s
        from django.test import Client
        assert not s.DEBUG
        proxied = {"HTTP_HOST": "dpp.example.com", "HTTP_X_FORWARDED_PROTO": "https"}
        client = Client(enforce_csrf_checks=True)
        page = client.get("/admin/login/", **proxied)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
        css = re.search(r'href="(/static/admin/[^"]+[.]css)"', page.content.decode()).group(1)
        print("login_page", page.status_code, client.cookies["csrftoken"]["secure"] is True)
        answer = client.post("/admin/login/?next=/admin/", {"username": "operator", "password": "a-long-password-1",
                             "csrfmiddlewaretoken": token}, HTTP_ORIGIN="https://dpp.example.com", **proxied)
        print("login", answer.status_code, answer.get("Location"), client.cookies["sessionid"]["secure"] is True)
        print("hsts", "max-age=" in page.get("Strict-Transport-Security", ""))
        static = client.get(css, **proxied)
        print("static", static.status_code, static["Content-Type"].split(";")[0])
        plain = Client().get("/admin/login/", HTTP_HOST="dpp.example.com")
        print("plain_http", plain.status_code, plain.get("Location"))
    """, environment)

    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["login_page"] == "200 True"
    assert lines["login"] == "302 /admin/ True"
    assert lines["hsts"] == "True"
    assert lines["static"] == "200 text/css"
    assert lines["plain_http"] == "301 https://dpp.example.com/admin/login/"


class TestStaticFilesWithDebugOff:
    def test_the_admin_stylesheet_is_served_by_the_app(self, client):
        assert settings.DEBUG is False

        response = client.get("/static/admin/css/base.css")

        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/css")
        assert b"".join(response.streaming_content if response.streaming else [response.content])

    def test_an_unknown_static_file_is_a_404(self, client):
        assert client.get("/static/admin/css/no-such-file.css").status_code == 404
