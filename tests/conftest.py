"""Shared fixtures. Tests run against the real PostgreSQL and Redis of this machine and the moto
emulator started by `make test` (scripts/emulator.py)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("DPP_ENV", "test")


@pytest.fixture(autouse=True)
def _default_plans(request):
    """Plans come from a data migration; transactional tests flush them, so re-seed when needed."""
    marker = request.node.get_closest_marker("django_db")
    names = request.fixturenames
    if "transactional_db" in names or "live_server" in names or (marker and marker.kwargs.get("transaction")):
        request.getfixturevalue("transactional_db")
    elif "db" in names or marker:
        request.getfixturevalue("db")
    else:
        return
    from tests.factories import plans_seed_defaults

    plans_seed_defaults()


@pytest.fixture
def tenant(db):
    from tests.factories import TenantFactory

    return TenantFactory(balance_micros=10_000_000)


@pytest.fixture
def other_tenant(db):
    from tests.factories import TenantFactory

    return TenantFactory(balance_micros=10_000_000)


@pytest.fixture
def api_key(tenant):
    from tenants.services import api_key_issue

    return api_key_issue(tenant=tenant, label="test").plaintext


@pytest.fixture
def other_api_key(other_tenant):
    from tenants.services import api_key_issue

    return api_key_issue(tenant=other_tenant, label="other").plaintext


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def auth_client(api_key):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    return client


@pytest.fixture
def result_bucket():
    """The S3 bucket of results exists on the emulator."""
    from django.conf import settings

    from dpp.aws import s3_client

    client = s3_client()
    try:
        client.create_bucket(Bucket=settings.DPP_RESULT_BUCKET)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    return settings.DPP_RESULT_BUCKET
