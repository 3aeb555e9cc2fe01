"""The pack contract: what every pack type (built-in or an operator's) provides.

A pack is a class registered under its ``pack_type`` (settings.DPP_PACKS lists the dotted paths).
It declares a JSON schema for its inputs, validates them (schema plus the checks a schema cannot
express), quotes the least reservation it accepts, and executes deterministically, returning its
output and its actual cost in integer USD micros (never above the quote it gave for the inputs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import jsonschema


class PackInputError(Exception):
    """Inputs refused at submission: answered as a 422 problem naming ``field`` (a dotted path
    inside ``inputs``, e.g. ``options.2.scores.cost``)."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


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
        normalised inputs (defaults filled in). Raise PackInputError naming the first bad field."""
        validator = jsonschema.Draft202012Validator(self.input_schema)
        errors = sorted(validator.iter_errors(inputs), key=lambda e: (list(e.absolute_path), e.message))
        if errors:
            error = errors[0]
            parts = [str(part) for part in error.absolute_path]
            # Name the missing or unexpected property itself, not only its parent object.
            named: list[str] = []
            if error.validator == "required" and isinstance(error.instance, dict):
                named = [name for name in error.validator_value if name not in error.instance]
            elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
                allowed = set(error.schema.get("properties", {}))
                named = sorted(name for name in error.instance if name not in allowed)
            parts.extend(named[:1])
            raise PackInputError(".".join(parts) or "inputs", error.message)
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
