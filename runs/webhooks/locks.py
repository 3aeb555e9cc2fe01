"""Row and advisory locks of webhooks, in one place.

Lock order: a tenant's endpoint-set lock (advisory), then endpoint rows, then delivery rows. The
recording of events (inside a run transition) takes no lock here: it only inserts.
"""

from __future__ import annotations

from django.db import connection


def tenant_endpoints_lock(*, tenant_id) -> None:
    """Serialise changes to one tenant's set of endpoints (the plan limit is then exact)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"webhook-endpoints:{tenant_id}"])


def endpoint_lock(*, queryset, endpoint_id):
    """The endpoint's row, locked FOR NO KEY UPDATE (no path changes its primary key): inserting
    a delivery that references it takes FOR KEY SHARE inside run transitions that already hold the
    tenant's wallet lock, and must not wait behind a secret rotation, a PATCH or a disable."""
    return queryset.select_for_update(of=("self",), no_key=True).filter(pk=endpoint_id).first()
