"""openapi-python-client generates a client from the live schema without a warning: a check that
keeps the schema clean for every generator (the shipped client, clients/python, is hand-written)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_openapi_python_client_generates_a_client_from_the_schema_without_warnings(tmp_path):
    schema = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(schema), "--validate", "--fail-on-warn")

    # ruff (a post-generation hook of the generator) is in the venv's bin, not necessarily on PATH.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [str(BIN / "openapi-python-client"), "generate", "--path", str(schema), "--output-path",
         str(tmp_path / "generated"), "--meta", "none", "--fail-on-warning"],
        capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path,
    )

    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Warning" not in output, output
    api = tmp_path / "generated" / "api"
    generated = {path.stem for path in api.rglob("*.py")}
    assert {"runs_create", "runs_retrieve", "runs_list", "balance_retrieve", "packs_list"} <= generated
