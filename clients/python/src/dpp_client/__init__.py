"""dpp_client: the Python client of DPP, the Decision Pack Platform.

    from dpp_client import Client
    client = Client("http://127.0.0.1:8000", "dpp_live_...")
    envelope = client.run("decision", inputs, max_cost_usd="0.0500")
"""

__version__ = "0.1.0"

from dpp_client._client import AsyncClient, Client  # noqa: E402
from dpp_client._core import ACTIVE_STATUSES, DPPObject, new_idempotency_key  # noqa: E402
from dpp_client.errors import *  # noqa: E402,F403
from dpp_client.errors import __all__ as _errors_all  # noqa: E402
from dpp_client.webhooks import verify_webhook, webhook_signature  # noqa: E402

__all__ = ["ACTIVE_STATUSES", "AsyncClient", "Client", "DPPObject", "new_idempotency_key", "verify_webhook",
           "webhook_signature", *_errors_all]
