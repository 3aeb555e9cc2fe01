"""The pack contract: what every pack type (built-in or an operator's) provides.

A pack is a class registered under its ``pack_type`` (settings.DPP_PACKS lists the dotted paths).
It declares a JSON schema for its inputs, validates them (schema plus the checks a schema cannot
express), quotes the least reservation it accepts, and executes deterministically, returning its
output and its actual cost in integer USD micros (never above the quote it gave for the inputs).
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

import jsonschema

MAX_SCHEMA_ERRORS = 10  # schema validation stops after this many errors; the first is answered
MAX_PATH_CHARS = 200  # a field path in an answer is cut to this length (keys are client input)


class PackInputError(Exception):
    """Inputs refused at submission: answered as a 422 problem naming ``field`` (a dotted path
    inside ``inputs``, e.g. ``options.2.scores.cost``)."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def _bounded_path(parts: list[str]) -> str:
    path = ".".join(parts) or "inputs"
    return path if len(path) <= MAX_PATH_CHARS else path[: MAX_PATH_CHARS - 1] + "\u2026"


def schema_error_message(keyword: str, value: Any) -> str:
    """What a failed schema keyword means, from the schema alone (never from the input)."""
    def shown(item: Any) -> str:
        return json.dumps(item)[:100]

    messages = {
        "type": lambda: f"must be of type {' or '.join(value) if isinstance(value, list) else value}",
        "required": lambda: "is required",
        "additionalProperties": lambda: "is not an allowed field",
        "enum": lambda: "must be one of " + ", ".join(shown(item) for item in value[:20]),
        "const": lambda: f"must be {shown(value)}",
        "minItems": lambda: f"must have at least {value} items",
        "maxItems": lambda: f"must have at most {value} items",
        "minProperties": lambda: f"must have at least {value} fields",
        "maxProperties": lambda: f"must have at most {value} fields",
        "minLength": lambda: f"must have at least {value} characters",
        "maxLength": lambda: f"must have at most {value} characters",
        "minimum": lambda: f"must be >= {value}",
        "maximum": lambda: f"must be <= {value}",
        "exclusiveMinimum": lambda: f"must be > {value}",
        "exclusiveMaximum": lambda: f"must be < {value}",
        "pattern": lambda: f"must match {shown(value)}",
    }
    make = messages.get(keyword)
    return make() if make else f"does not satisfy the schema's {keyword!r} rule"


def schema_size_error(inputs: Any, schema: dict[str, Any]) -> PackInputError | None:
    """The first size bound of ``schema`` that ``inputs`` exceeds, found without entering any
    oversized container (breadth first, so the shallowest offender is named), or None."""
    queue: deque[tuple[Any, dict[str, Any], list[str]]] = deque([(inputs, schema, [])])
    while queue:
        value, node, path = queue.popleft()
        if not isinstance(node, dict):
            continue
        if isinstance(value, list):
            if "maxItems" in node and len(value) > node["maxItems"]:
                return PackInputError(_bounded_path(path), schema_error_message("maxItems", node["maxItems"]))
            if isinstance(node.get("items"), dict):
                queue.extend((item, node["items"], [*path, str(index)]) for index, item in enumerate(value))
        elif isinstance(value, dict):
            if "maxProperties" in node and len(value) > node["maxProperties"]:
                return PackInputError(_bounded_path(path), schema_error_message("maxProperties", node["maxProperties"]))
            properties, extra = node.get("properties", {}), node.get("additionalProperties")
            if extra is False and len(value) > len(properties):
                continue  # more fields than allowed: jsonschema names the first unexpected one
            for key, item in value.items():
                child = properties.get(key, extra if isinstance(extra, dict) else None)
                if child is not None:
                    queue.append((item, child, [*path, str(key)]))
        elif isinstance(value, str) and "maxLength" in node and len(value) > node["maxLength"]:
            return PackInputError(_bounded_path(path), schema_error_message("maxLength", node["maxLength"]))
    return None


class PackExecutionError(Exception):
    """The pack could not produce a result; the run fails with ``reason_code``."""

    def __init__(self, reason_code: str, detail: str):
        self.reason_code = reason_code
        self.detail = detail
        super().__init__(f"{reason_code}: {detail}")


@dataclass(frozen=True)
class PackResult:
    data: dict[str, Any]
    actual_cost_micros: int
    logs: list[str] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)


class Pack:
    pack_type: ClassVar[str]
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    input_schema: ClassVar[dict[str, Any]]

    def validate(self, inputs: Any) -> dict[str, Any]:
        """Check ``inputs`` against the JSON schema, then the pack's own rules; return the
        normalised inputs (defaults filled in). Raise PackInputError naming the first bad field.

        Cheap first: the sizes the schema bounds (maxItems, maxProperties, maxLength) are checked
        by a walk that never enters an oversized container, so ``options`` of 50,000 items costs one
        ``len``, not 50,000 item validations. Then the schema, stopping after MAX_SCHEMA_ERRORS
        errors. Messages are ours: they never echo the input (jsonschema's repeat the instance)."""
        size_error = schema_size_error(inputs, self.input_schema)
        if size_error is not None:
            raise size_error
        validator = jsonschema.Draft202012Validator(self.input_schema)
        errors = sorted(itertools.islice(validator.iter_errors(inputs), MAX_SCHEMA_ERRORS),
                        key=lambda e: ([str(part) for part in e.absolute_path], e.validator))
        if errors:
            error = errors[0]
            parts = [str(part) for part in error.absolute_path]
            # Name the missing or unexpected property itself, not only its parent object.
            named: list[str] = []
            if error.validator == "required" and isinstance(error.instance, dict):
                named = [name for name in error.validator_value if name not in error.instance]
            elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
                allowed = set(error.schema.get("properties", {}))
                named = sorted(itertools.islice((name for name in error.instance if name not in allowed), 1))
            parts.extend(named[:1])
            raise PackInputError(_bounded_path(parts), schema_error_message(error.validator, error.validator_value))
        return self.check(inputs)

    def check(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Pack-specific checks after the schema passed; override. Returns normalised inputs."""
        return inputs

    def quote_micros(self, inputs: dict[str, Any]) -> int:
        """The least reservation accepted for these (validated) inputs; also the cost ceiling."""
        raise NotImplementedError

    def execute(self, inputs: dict[str, Any], *, timebox_sec: int) -> PackResult:
        """Run the pack on validated inputs. Deterministic for the same inputs."""
        raise NotImplementedError

    def pricing(self) -> dict[str, Any]:
        """A description of how the pack prices a run, for GET /v1/packs."""
        return {}
