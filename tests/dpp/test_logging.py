"""Structured logs: one JSON object per line carrying the bound request, trace and tenant ids;
API keys never reach a log line, whichever way they arrive."""

import io
import json
import logging

import pytest

from dpp.context import bound_context
from dpp.logging import ContextFilter, JsonFormatter
from tenants import keys


@pytest.fixture
def log_lines():
    """A logger wired like the console handler of settings.LOGGING, writing to a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("dpp.tests.logging")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False

    def lines() -> list[str]:
        return stream.getvalue().splitlines()

    lines.logger = logger
    yield lines
    logger.removeHandler(handler)


class TestJsonFormatter:
    def test_writes_one_json_object_per_line_with_the_bound_ids(self, log_lines):
        with bound_context(request_id="req-1", trace_id="trace-1", tenant_id="tenant-1"):
            log_lines.logger.info("first")
            log_lines.logger.warning("second\nspans lines")

        lines = log_lines()
        assert len(lines) == 2
        first, second = (json.loads(line) for line in lines)
        assert (first["message"], first["level"], first["logger"]) == ("first", "INFO", "dpp.tests.logging")
        assert (first["request_id"], first["trace_id"], first["tenant_id"]) == ("req-1", "trace-1", "tenant-1")
        assert first["run_id"] is None and first["ts"].endswith("+00:00")
        assert second["message"] == "second\nspans lines" and second["level"] == "WARNING"

    def test_ids_are_empty_outside_a_bound_context(self, log_lines):
        log_lines.logger.info("no context")

        line = json.loads(log_lines()[0])
        assert (line["request_id"], line["trace_id"], line["tenant_id"]) == (None, None, None)

    def test_extra_fields_are_kept(self, log_lines):
        log_lines.logger.info("request", extra={"status": 201, "duration_ms": 3.5})

        line = json.loads(log_lines()[0])
        assert (line["status"], line["duration_ms"]) == (201, 3.5)

    def test_a_traceback_stays_inside_the_one_line(self, log_lines):
        try:
            raise ValueError("boom")
        except ValueError:
            log_lines.logger.exception("failed")

        lines = log_lines()
        assert len(lines) == 1
        assert "ValueError: boom" in json.loads(lines[0])["exc_info"]


class TestRedaction:
    @pytest.fixture
    def key(self):
        return keys.generate()

    def test_a_key_in_the_message_is_redacted(self, log_lines, key):
        log_lines.logger.info("client sent %s in a header", key)

        line = log_lines()[0]
        assert key not in line and key[9:41] not in line
        assert "dpp_live_[REDACTED]" in json.loads(line)["message"]

    def test_a_key_in_an_extra_field_is_redacted(self, log_lines, key):
        log_lines.logger.info("auth", extra={"authorization": f"Bearer {key}", "headers": {"Authorization": key}})

        line = log_lines()[0]
        assert key not in line and key[9:41] not in line
        assert json.loads(line)["authorization"] == "Bearer dpp_live_[REDACTED]"

    def test_a_key_in_a_traceback_is_redacted(self, log_lines, key):
        try:
            raise ValueError(f"bad key {key}")
        except ValueError:
            log_lines.logger.exception("failed")

        assert key not in log_lines()[0]

    def test_a_key_never_reaches_plain_text_logs_either(self, key):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.addFilter(ContextFilter())
        handler.setFormatter(logging.Formatter("%(levelname)s [req=%(request_id)s] %(message)s"))
        record = logging.makeLogRecord({"name": "dpp.tests", "levelno": logging.INFO, "levelname": "INFO",
                                        "msg": "key %s", "args": (key,)})

        handler.handle(record)

        assert key not in stream.getvalue() and "dpp_live_[REDACTED]" in stream.getvalue()
