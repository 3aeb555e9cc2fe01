"""The emulator helper (scripts/emulator.py) against real moto processes on ports 5050-5059.

No database: the helper runs as a subprocess pointed at a port of each test's own, with its pid
files in a temporary directory, so nothing here touches the emulator other tests use.
"""

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
MOTO_SERVER = Path(sys.executable).parent / "moto_server"
pytestmark = [pytest.mark.emulator, pytest.mark.slow]


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def wait_until_answers(port: int, *, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not answers(port):
        assert time.monotonic() < deadline, f"moto on {port} did not answer within {seconds} s"
        time.sleep(0.2)


def moto_pids(port: int) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"moto_server -H 127.0.0.1 -p {port}$"], capture_output=True, text=True,
                         timeout=10)
    return [int(pid) for pid in out.stdout.split()]


def client(service: str, port: int):
    return boto3.client(service, endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def visibility_timeout(port: int, queue_name: str) -> str:
    sqs = client("sqs", port)
    url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"][
        "VisibilityTimeout"]


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Helper:
    """Runs ``scripts/emulator.py`` against one port, with its own run directory."""

    def __init__(self, *, port: int, run_dir: Path):
        self.port = port
        self.run_dir = run_dir
        self.pidfile = run_dir / f"moto-{port}.pid"
        self.started_pids: set[int] = set()

    def env(self, **overrides: str) -> dict[str, str]:
        env = {**os.environ, "DPP_ENV": "test", "AWS_ENDPOINT_URL_SQS": f"http://127.0.0.1:{self.port}",
               "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{self.port}", "DPP_LEASE_SECONDS": "7",
               "DPP_HEARTBEAT_SECONDS": "2", "DPP_QUEUE_PREFIX": "emu-", "DPP_RUN_DIR": str(self.run_dir)}
        for name in ("AWS_ENDPOINT_URL", "DPP_EMULATOR_OWNER", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            env.pop(name, None)
        return {**env, **overrides}

    def popen(self, command: str, **env: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "scripts/emulator.py", command], cwd=REPO, env=self.env(**env),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def __call__(self, command: str, **env: str) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "scripts/emulator.py", command], cwd=REPO, env=self.env(**env),
                                capture_output=True, text=True, timeout=90)
        self.remember_started()
        return result

    def remember_started(self) -> None:
        if self.pidfile.exists():
            self.started_pids.add(int(self.pidfile.read_text().split()[0]))

    def cleanup(self) -> None:
        """Stop what the helper started; then make sure, by pid, that nothing it started survives."""
        try:
            self("stop")
        finally:
            for pid in self.started_pids:
                if pid in moto_pids(self.port):  # still the server it started, not a recycled pid
                    kill_group(pid)


@pytest.fixture
def helper_on(tmp_path):
    helpers: list[Helper] = []

    def make(port: int) -> Helper:
        assert 5050 <= port <= 5059, "these tests own ports 5050-5059 only"
        assert not answers(port), f"port {port} is busy before the test"
        helpers.append(Helper(port=port, run_dir=tmp_path / "run"))
        return helpers[-1]

    try:
        yield make
    finally:
        for helper in helpers:
            helper.cleanup()


@pytest.fixture
def foreign_moto():
    """A moto server started by the test itself, not by the helper."""
    processes: list[subprocess.Popen] = []

    def start(port: int) -> subprocess.Popen:
        process = subprocess.Popen([str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        processes.append(process)
        wait_until_answers(port)
        return process

    try:
        yield start
    finally:
        for process in processes:
            kill_group(process.pid)
            process.wait(timeout=10)


class TestEmulatorStart:
    def test_start_twice_leaves_exactly_one_server(self, helper_on):
        helper = helper_on(5051)

        first, second = helper("start"), helper("start")

        assert first.returncode == 0, first.stderr
        assert second.returncode == 0, second.stderr
        assert "reusing" in second.stdout
        assert len(moto_pids(5051)) == 1
        assert helper("status").returncode == 0

    def test_two_concurrent_starts_leave_exactly_one_server(self, helper_on):
        helper = helper_on(5053)

        processes = [helper.popen("start"), helper.popen("start")]
        results = [process.communicate(timeout=90) for process in processes]
        helper.remember_started()

        assert [process.returncode for process in processes] == [0, 0], results
        assert len(moto_pids(5053)) == 1

    def test_start_does_nothing_for_real_aws_endpoints(self, helper_on):
        helper = helper_on(5054)

        result = helper("start", AWS_ENDPOINT_URL_SQS="https://sqs.us-east-1.amazonaws.com",
                        AWS_ENDPOINT_URL_S3="https://s3.us-east-1.amazonaws.com")

        assert result.returncode == 0, result.stderr
        assert "real AWS" in result.stdout
        assert not helper.pidfile.exists()
        assert not answers(5054)


class TestEmulatorEnsure:
    def test_ensure_twice_is_idempotent_and_creates_the_queue_and_the_bucket(self, helper_on):
        helper = helper_on(5055)
        assert helper("start").returncode == 0

        first, second = helper("ensure"), helper("ensure")

        assert (first.returncode, second.returncode) == (0, 0), second.stderr
        assert visibility_timeout(5055, "emu-dpp-runs") == "7"
        assert "dpp-results" in [bucket["Name"] for bucket in client("s3", 5055).list_buckets()["Buckets"]]
        assert [url for url in client("sqs", 5055).list_queues().get("QueueUrls", []) if "emu-dpp-runs" in url]

    def test_ensure_sets_the_lease_on_a_queue_that_exists_with_another_visibility(self, helper_on):
        helper = helper_on(5056)
        assert helper("start").returncode == 0
        # As kombu would have created it: with its own default visibility (1800 s).
        client("sqs", 5056).create_queue(QueueName="old-dpp-runs", Attributes={"VisibilityTimeout": "1800"})

        result = helper("ensure", DPP_QUEUE_PREFIX="old-", DPP_LEASE_SECONDS="11")

        assert result.returncode == 0, result.stderr
        assert visibility_timeout(5056, "old-dpp-runs") == "11"


class TestEmulatorStop:
    def test_stop_stops_the_server_it_started(self, helper_on):
        helper = helper_on(5057)
        assert helper("start").returncode == 0

        result = helper("stop")

        assert result.returncode == 0
        assert not answers(5057)
        assert moto_pids(5057) == []
        assert not helper.pidfile.exists()
        assert helper("status").returncode == 1

    def test_stop_never_stops_a_server_it_did_not_start(self, helper_on, foreign_moto):
        helper = helper_on(5052)
        ours = foreign_moto(5052)

        started, stopped = helper("start"), helper("stop")

        assert (started.returncode, stopped.returncode) == (0, 0)
        assert "reusing" in started.stdout
        assert answers(5052)
        assert ours.poll() is None

    def test_stop_leaves_the_server_of_another_owner(self, helper_on):
        helper = helper_on(5059)
        owner = str(os.getpid())  # a live process: the owner is still running
        assert helper("start", DPP_EMULATOR_OWNER=owner).returncode == 0

        other = helper("stop", DPP_EMULATOR_OWNER="1")
        assert "another run" in other.stdout
        assert answers(5059)

        helper("stop", DPP_EMULATOR_OWNER=owner)
        assert not answers(5059)

    def test_start_adopts_a_server_whose_owner_is_gone(self, helper_on):
        helper = helper_on(5050)
        exited = subprocess.Popen(["true"])
        exited.wait(timeout=10)
        dead_owner = str(exited.pid)
        assert helper("start", DPP_EMULATOR_OWNER=dead_owner).returncode == 0

        adopted = helper("start", DPP_EMULATOR_OWNER=str(os.getpid()))
        helper("stop", DPP_EMULATOR_OWNER=str(os.getpid()))

        assert "adopting" in adopted.stdout
        assert not answers(5050)
