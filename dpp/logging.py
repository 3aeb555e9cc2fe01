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
    """Copies the bound ids onto the record and redacts keys from its message and traceback,
    so the plain-text formatter (DPP_JSON_LOGS=false) never prints a key either."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string is reported by the handler, not raised at the caller
            message = None
        if message is not None and (redacted := redact(message)) != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
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
            payload["exc_info"] = record.exc_text or self.formatException(record.exc_info)
        # Redact the whole line: a key may also arrive in an ``extra`` field. The replacement
        # holds no quote or backslash, so the line stays valid JSON.
        return redact(json.dumps(payload, default=str))
