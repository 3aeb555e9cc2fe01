"""Settings come from the environment and refuse bad values loudly, naming the variable; the
emulator's dummy AWS credentials never reach a real endpoint."""

import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from dpp.aws import configure_aws_environment

REPO = Path(__file__).resolve().parents[2]
GOOD_PRODUCTION = {"DPP_ENV": "production", "DJANGO_SECRET_KEY": "s" * 50, "DPP_KEY_PEPPER": "p" * 32,
                   "ALLOWED_HOSTS": "dpp.example.com", "DPP_WEBHOOK_ENCRYPTION_KEY": "w" * 32}


def boot(**env) -> subprocess.CompletedProcess:
    """Start Django in a fresh interpreter with only these DPP/Django/AWS variables set."""
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("DPP_", "DJANGO_", "AWS_", "CORS_", "LOG_LEVEL", "ALLOWED_HOSTS"))}
    environment.update(env)
    code = "import os, django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'dpp.settings'); django.setup()"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environment, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize(("env", "name"), [
    pytest.param({"DPP_LEASE_SECONDS": "abc"}, "DPP_LEASE_SECONDS", id="lease not a number"),
    pytest.param({"DPP_LEASE_SECONDS": "10", "DPP_HEARTBEAT_SECONDS": "10"}, "DPP_HEARTBEAT_SECONDS",
                 id="heartbeat equal to lease"),
    pytest.param({"DPP_LEASE_SECONDS": "10", "DPP_HEARTBEAT_SECONDS": "30"}, "DPP_HEARTBEAT_SECONDS",
                 id="heartbeat longer than lease"),
    pytest.param({"DPP_JSON_LOGS": "maybe"}, "DPP_JSON_LOGS", id="json logs not a boolean"),
    pytest.param({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL", id="database not postgres"),
    pytest.param({"DPP_ENV": "production"}, "DJANGO_SECRET_KEY", id="production without a secret key"),
    pytest.param({"DPP_ENV": "production", "DJANGO_SECRET_KEY": "s" * 50}, "DPP_KEY_PEPPER",
                 id="production without a pepper"),
    pytest.param({**GOOD_PRODUCTION, "ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS", id="production without allowed hosts"),
    pytest.param({**GOOD_PRODUCTION, "DJANGO_SECRET_KEY": "dpp-local-development-secret-key-not-for-production"},
                 "DJANGO_SECRET_KEY", id="production with the development secret key"),
    pytest.param({**GOOD_PRODUCTION, "DPP_KEY_PEPPER": "dpp-local-development-pepper"}, "DPP_KEY_PEPPER",
                 id="production with the development pepper"),
    pytest.param({**GOOD_PRODUCTION, "DJANGO_DEBUG": "true"}, "DJANGO_DEBUG", id="production with debug"),
    pytest.param({"DATABASE_URL": "postgres://dpp:pw@db.internal.example.com:5432/dpp"}, "DPP_ENV",
                 id="no DPP_ENV with a database on another host"),
    pytest.param({"DATABASE_URL": "postgres://dpp:pw@10.0.0.5:5432/dpp", "DJANGO_SECRET_KEY": "s" * 50,
                  "DPP_KEY_PEPPER": "p" * 32}, "DPP_ENV", id="no DPP_ENV with a remote database, even with secrets"),
    pytest.param({"DPP_TRUST_X_FORWARDED_PROTO": "sometimes"}, "DPP_TRUST_X_FORWARDED_PROTO",
                 id="proxy trust not a boolean"),
    pytest.param({**GOOD_PRODUCTION, "DPP_WEBHOOK_ENCRYPTION_KEY": ""},
                 "DPP_WEBHOOK_ENCRYPTION_KEY", id="production without a webhook encryption key"),
    pytest.param({**GOOD_PRODUCTION, "DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS": "127.0.0.0/8"},
                 "DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS", id="private webhook receivers in production"),
    pytest.param({"DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS": "127.0.0.0/33"}, "DPP_WEBHOOK_ALLOW_PRIVATE_CIDRS",
                 id="webhook allow list not a network"),
    pytest.param({"DPP_WEBHOOK_RETRY_SCHEDULE": "5,soon"}, "DPP_WEBHOOK_RETRY_SCHEDULE",
                 id="webhook retry schedule not seconds"),
    pytest.param({"DPP_WEBHOOK_TIMEOUT_SECONDS": "15", "DPP_WEBHOOK_CLAIM_SECONDS": "15"},
                 "DPP_WEBHOOK_CLAIM_SECONDS", id="webhook claim not longer than the timeout"),
    pytest.param({"CORS_ALLOWED_ORIGINS": "*"}, "CORS_ALLOWED_ORIGINS", id="cors wildcard"),
    pytest.param({"CORS_ALLOWED_ORIGINS": "https://ok.example.com,*"}, "CORS_ALLOWED_ORIGINS",
                 id="cors wildcard in a list"),
    pytest.param({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL", id="unknown log level"),
    pytest.param({"DPP_ENV": "staging"}, "DPP_ENV", id="unknown environment"),
])
def test_a_bad_value_stops_the_start_naming_the_variable(env, name):
    result = boot(**env)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and name in result.stderr


def test_a_complete_production_configuration_starts():
    result = boot(**GOOD_PRODUCTION)

    assert result.returncode == 0, result.stderr


def test_production_never_falls_back_to_the_development_secrets():
    code = ("import os, django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'dpp.settings'); django.setup();"
            "from django.conf import settings; print(settings.SECRET_KEY == 's' * 50, settings.DPP_KEY_PEPPER == 'p' * 32,"
            " settings.DPP_WEBHOOK_ENCRYPTION_KEY == 'w' * 32, settings.DPP_WEBHOOK_ALLOW_HTTP, settings.DEBUG)")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DPP_", "DJANGO_", "AWS_"))}
    environment.update(GOOD_PRODUCTION)

    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environment, capture_output=True, text=True,
                            timeout=60)

    assert result.stdout.split() == ["True", "True", "True", "False", "False"], result.stderr


@pytest.fixture
def aws_environ():
    """configure_aws_environment writes os.environ; give it a copy to write and restore after."""
    with mock.patch.dict(os.environ):
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS",
                     "AWS_ENDPOINT_URL_S3"):
            os.environ.pop(name, None)
        yield os.environ


class TestAwsCredentials:
    def test_loopback_endpoints_get_the_emulators_dummy_credentials(self, aws_environ):
        config = configure_aws_environment(local=True)

        assert (config.sqs_endpoint, config.s3_endpoint) == ("http://127.0.0.1:5000", "http://127.0.0.1:5000")
        assert config.uses_loopback_credentials and aws_environ["AWS_ACCESS_KEY_ID"] == "test"

    @pytest.mark.parametrize("endpoints", [
        pytest.param({"AWS_ENDPOINT_URL_SQS": "https://sqs.eu-west-1.amazonaws.com",
                      "AWS_ENDPOINT_URL_S3": "https://s3.eu-west-1.amazonaws.com"}, id="both real"),
        pytest.param({"AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:5000",
                      "AWS_ENDPOINT_URL_S3": "https://s3.eu-west-1.amazonaws.com"}, id="s3 real"),
        pytest.param({"AWS_ENDPOINT_URL": "https://aws.internal.example.com"}, id="generic real"),
        pytest.param({"AWS_ENDPOINT_URL": "http://127.0.0.1.example.com:5000"}, id="loopback lookalike"),
    ])
    def test_an_endpoint_off_loopback_never_gets_them(self, aws_environ, endpoints):
        aws_environ.update(endpoints)

        config = configure_aws_environment(local=True)

        assert not config.uses_loopback_credentials
        assert aws_environ.get("AWS_ACCESS_KEY_ID") != "test"

    def test_production_without_endpoints_uses_the_aws_credential_chain(self, aws_environ):
        config = configure_aws_environment(local=False)

        assert config.sqs_endpoint is None and config.s3_endpoint is None
        assert "AWS_ACCESS_KEY_ID" not in aws_environ

    def test_credentials_given_by_the_operator_are_kept(self, aws_environ):
        aws_environ["AWS_ACCESS_KEY_ID"] = "AKIAREAL"

        configure_aws_environment(local=True)

        assert aws_environ["AWS_ACCESS_KEY_ID"] == "AKIAREAL"
