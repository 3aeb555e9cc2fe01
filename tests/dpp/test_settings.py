"""Settings come from the environment and refuse bad values loudly, naming the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dpp.aws import configure_aws_environment

REPO = Path(__file__).resolve().parents[2]


def boot(**env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DPP_", "DJANGO_", "AWS_"))}
    environment.update(env)
    code = "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'dpp.settings'); django.setup()"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environment, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize(("env", "name"), [
    ({"DPP_LEASE_SECONDS": "abc"}, "DPP_LEASE_SECONDS"),
    ({"DPP_LEASE_SECONDS": "10", "DPP_HEARTBEAT_SECONDS": "10"}, "DPP_HEARTBEAT_SECONDS"),
    ({"DPP_JSON_LOGS": "maybe"}, "DPP_JSON_LOGS"),
    ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
    ({"DPP_ENV": "production"}, "DJANGO_SECRET_KEY"),
    ({"DPP_ENV": "production", "DJANGO_SECRET_KEY": "s" * 50}, "DPP_KEY_PEPPER"),
    ({"CORS_ALLOWED_ORIGINS": "*"}, "CORS_ALLOWED_ORIGINS"),
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ({"DPP_ENV": "staging"}, "DPP_ENV"),
])
def test_bad_values_stop_the_start_naming_the_variable(env, name):
    result = boot(**env)
    assert result.returncode != 0
    assert name in result.stderr


def test_a_complete_production_configuration_starts():
    result = boot(DPP_ENV="production", DJANGO_SECRET_KEY="s" * 50, DPP_KEY_PEPPER="p" * 32)
    assert result.returncode == 0, result.stderr


class TestAwsCredentials:
    def test_loopback_endpoints_get_the_emulators_dummy_credentials(self, monkeypatch):
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:5000")
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:5000")
        config = configure_aws_environment(local=True)
        assert config.uses_loopback_credentials and os.environ["AWS_ACCESS_KEY_ID"] == "test"

    def test_a_real_endpoint_never_gets_them(self, monkeypatch):
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", "https://sqs.eu-west-1.amazonaws.com")
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://s3.eu-west-1.amazonaws.com")
        config = configure_aws_environment(local=True)
        assert not config.uses_loopback_credentials
        assert "AWS_ACCESS_KEY_ID" not in os.environ

    def test_production_without_endpoints_uses_the_aws_chain(self, monkeypatch):
        for name in ("AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_S3"):
            monkeypatch.delenv(name, raising=False)
        config = configure_aws_environment(local=False)
        assert config.sqs_endpoint is None and config.s3_endpoint is None
        assert "AWS_ACCESS_KEY_ID" not in os.environ
