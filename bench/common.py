"""Shared by the benchmark and the soak: a database of their own and a funded tenant."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def funded_tenant(*, database_url: str, name: str, micros: int):
    """Create (if missing) and migrate ``database_url``, set Django up, and return a new tenant on
    the unlimited plan credited with ``micros`` through the ledger, with a fresh API key."""
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", database_url.rsplit("/", 1)[1]],
                   capture_output=True, check=False)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO, check=True)
    import django

    django.setup()
    from billing.services import wallet_top_up
    from tenants.services import api_key_issue, tenant_create

    tenant = tenant_create(name=name, plan_code="unlimited")
    wallet_top_up(tenant=tenant, amount_micros=micros, memo=name)
    return tenant, api_key_issue(tenant=tenant, label=name).plaintext
