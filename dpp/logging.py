"""Structured logging: one JSON object per line with request_id, trace_id, tenant_id, run_id.

Switch to plain text with DPP_JSON_LOGS=false. API keys never reach a log line: the formatter
redacts anything shaped like one.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

from dpp.context import current_request_id, current_run_id, current_tenant_id, current_trace_id

_KEY_PATTERN = re.compile(r"dpp_live_[0-9A-Za-z]{8,}(?:_[0-9A-Za-z]{1,8})?")
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def redact(text: str) -> str:
    return _KEY_PATTERN.sub("dpp_live_[REDACTED]", text)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, getter in (
            ("request_id", current_request_id),
            ("trace_id", current_trace_id),
            ("tenant_id", current_tenant_id),
            ("run_id", current_run_id),
        ):
            if getattr(record, name, None) is None:
                setattr(record, name, getter())
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key in _RESERVED or key.startswith("_"):
                continue
            payload[key] = value
        if record.exc_info:
            payload["exc_info"] = redact(self.formatException(record.exc_info))
        return json.dumps(payload, default=str)
