"""The emulator helper (scripts/emulator.py) against real moto processes on ports of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.emulator, pytest.mark.slow]


def helper(command: str, port: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "DPP_ENV": "test", "AWS_ENDPOINT_URL_SQS": f"http://127.0.0.1:{port}",
           "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}", "DPP_LEASE_SECONDS": "7",
           "DPP_HEARTBEAT_SECONDS": "2", "DPP_QUEUE_PREFIX": "emu-"}
    env.pop("AWS_ENDPOINT_URL", None)
    return subprocess.run([sys.executable, "scripts/emulator.py", command], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def moto_processes(port: int) -> int:
    out = subprocess.run(["pgrep", "-f", f"moto_server -H 127.0.0.1 -p {port}"], capture_output=True, text=True)
    return len(out.stdout.split())


def client(service: str, port: int):
    return boto3.client(service, endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


class TestEmulatorHelper:
    def test_start_twice_runs_one_server_and_ensure_is_idempotent(self):
        port = 5051
        try:
            assert helper("start", port).returncode == 0
            second = helper("start", port)
            assert second.returncode == 0 and "reusing" in second.stdout
            assert moto_processes(port) == 1
            assert helper("ensure", port).returncode == 0
            url = client("sqs", port).get_queue_url(QueueName="emu-dpp-runs")["QueueUrl"]
            attributes = client("sqs", port).get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])
            assert attributes["Attributes"]["VisibilityTimeout"] == "7"
            assert "dpp-results" in [b["Name"] for b in client("s3", port).list_buckets()["Buckets"]]
            assert helper("status", port).returncode == 0
        finally:
            helper("stop", port)
        assert not answers(port)
        assert helper("status", port).returncode == 1

    def test_stop_never_stops_a_server_it_did_not_start(self):
        port = 5052
        ours = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 20
            while not answers(port) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert helper("start", port).returncode == 0  # reuses it
            assert helper("stop", port).returncode == 0
            assert answers(port)
        finally:
            os.killpg(ours.pid, signal.SIGTERM)
            ours.wait(timeout=10)
