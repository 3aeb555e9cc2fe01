"""Packs registered only in tests (through DPP_PACKS): a slow one for heartbeat, timebox and
kill drills, and an echo."""

from __future__ import annotations

import time

from runs.packs.base import Pack, PackExecutionError, PackResult


class SlowPack(Pack):
    pack_type = "test_slow"
    title = "Slow test pack"
    description = "Sleeps for `seconds`, then costs `cost_micros` (or fails when `fail`)."
    input_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["seconds"],
        "properties": {
            "seconds": {"type": "number", "minimum": 0, "maximum": 600},
            "cost_micros": {"type": "integer", "minimum": 0},
            "fail": {"type": "boolean"},
        },
    }

    def quote_micros(self, inputs):
        return max(1, inputs.get("cost_micros", 1000))

    def execute(self, inputs, *, timebox_sec):
        deadline = time.monotonic() + float(inputs["seconds"])
        while time.monotonic() < deadline:  # small steps, so signals and timeboxes land promptly
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        if inputs.get("fail"):
            raise PackExecutionError("PACK_FAILED", "the test pack was asked to fail")
        return PackResult(data={"slept": inputs["seconds"]}, actual_cost_micros=inputs.get("cost_micros", 1000))


class EchoPack(Pack):
    pack_type = "test_echo"
    title = "Echo test pack"
    description = "Returns its inputs."
    input_schema = {"type": "object"}

    def quote_micros(self, inputs):
        return 1000

    def execute(self, inputs, *, timebox_sec):
        return PackResult(data={"echo": inputs}, actual_cost_micros=1000)
