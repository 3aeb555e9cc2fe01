"""Webhooks (DESIGN section 7): signed (Standard Webhooks v1), retried from PostgreSQL, never
pointed inside the network. A Django app nested in runs (label ``webhooks``).

runs calls into this package (``runs.webhooks.services.webhook_events_record`` inside the
transaction of each transition); this package never imports runs' services or serializers.
"""
