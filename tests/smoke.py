#!/usr/bin/env python
"""`make smoke`: `make run` exactly as a newcomer runs it, then the README's first steps.

1. A database name that does not exist yet (checked), a free port, a queue and a bucket of its own;
   no DPP_ENV, no secrets: the newcomer's environment.
2. `make run` in the background, in its own process group; waits for /readyz.
3. Parses the `curl` that `make run` printed and executes it (the real curl, no shell).
4. Polls the run to COMPLETED, downloads the presigned result and checks its SHA-256.
5. Loads /admin/login/ and one static file it links (served by the app, DEBUG off).
6. Kills the worker (SIGKILL): scripts/supervise.sh starts a new one, which completes a second run.
7. Stops everything it started (SIGINT to the group, as Ctrl-C; then SIGKILL to whatever of
   `make run`'s process tree is left), checks the port is free again, drops the database.

Exit 0 and "smoke: OK" when every step passed; otherwise exit 1 with the failing step and the
tail of `make run`'s log. Every wait is bounded. Run it from the repository: `make smoke`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv" / "bin" / "python"
READY_TIMEOUT_SECONDS = 240  # migrations of a new database, collectstatic, four processes
RUN_TIMEOUT_SECONDS = 90
STOP_TIMEOUT_SECONDS = 30
LONG_POLL_SECONDS = 10  # DPP_SQS_WAIT_SECONDS's default


class SmokeFailure(Exception):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http(url: str, *, headers: dict | None = None, timeout: float = 10) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()
    except OSError:
        return 0, {}, b""


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (honcho starts each entry in a session of its own, so the
    process group of `make run` alone does not reach them)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is gone for our purpose
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(predicate, *, timeout: float, what: str, process: subprocess.Popen | None = None, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise SmokeFailure(f"`make run` exited with status {process.returncode} while waiting for {what}")
        time.sleep(every)
    raise SmokeFailure(f"timed out after {timeout} s waiting for {what}")


def printed_curl(log_path: Path) -> list[str] | None:
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith("curl ") and " -X POST " in line and "/v1/runs" in line:
            return shlex.split(line)
    return None


def curl_header(argv: list[str], name: str) -> str:
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag == "-H" and value.lower().startswith(name.lower() + ":"):
            return value.split(":", 1)[1].strip()
    raise SmokeFailure(f"the printed curl has no {name} header: {argv}")


def step(message: str) -> None:
    print(f"smoke: {message}", flush=True)


def run_smoke(env: dict, port: int, log_path: Path, state: dict) -> None:
    base = f"http://127.0.0.1:{port}"
    step(f"make run on port {port}, database {state['database']}, queue {env['DPP_QUEUE_NAME']}, "
         f"bucket {env['DPP_RESULT_BUCKET']} (log {log_path})")
    log = open(log_path, "wb")  # noqa: SIM115 - closed by main()
    state["log"] = log
    process = subprocess.Popen(["make", "run"], cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    state["process"] = process

    def ready():
        state["tree"] |= descendants(process.pid)
        return http(f"{base}/readyz", timeout=5)[0] == 200

    wait_for(ready, timeout=READY_TIMEOUT_SECONDS, what="/readyz to answer 200", process=process)
    step("/readyz answers 200")

    argv = wait_for(lambda: printed_curl(log_path), timeout=10, what="the printed curl")
    step("executing the printed curl")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise SmokeFailure(f"the printed curl failed ({result.returncode}): {result.stderr}")
    try:
        answer = json.loads(result.stdout)
        run_id = answer["run_id"]
    except (ValueError, KeyError):
        raise SmokeFailure(f"the printed curl did not answer a run: {result.stdout[:500]}") from None
    authorization = {"Authorization": curl_header(argv, "Authorization")}
    step(f"run {run_id} submitted ({answer.get('status')})")

    def completed(run_id):
        status, _, body = http(f"{base}/v1/runs/{run_id}", headers=authorization)
        run = json.loads(body) if status == 200 else {}
        if run.get("status") == "FAILED":
            raise SmokeFailure(f"the run ended {run['status']}: {run}")
        return run if run.get("status") == "COMPLETED" else None

    run = wait_for(lambda: completed(run_id), timeout=RUN_TIMEOUT_SECONDS, what=f"run {run_id} to complete")
    step(f"run COMPLETED, money {run['money_state']}, cost {run['cost']}")

    status, _, envelope = http(run["result"]["presigned_url"])
    if status != 200:
        raise SmokeFailure(f"the presigned result URL answered {status}")
    digest = hashlib.sha256(envelope).hexdigest()
    if digest != run["result"]["sha256"]:
        raise SmokeFailure(f"the result's SHA-256 is {digest}, the run says {run['result']['sha256']}")
    step(f"result downloaded, SHA-256 {digest} matches")

    status, _, page = http(f"{base}/admin/login/")
    if status != 200:
        raise SmokeFailure(f"/admin/login/ answered {status}")
    links = re.findall(r'href="(/static/[^"]+\.css)"', page.decode(errors="replace"))
    if not links:
        raise SmokeFailure("/admin/login/ links no stylesheet under /static/")
    status, headers, css = http(f"{base}{links[0]}")
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    if status != 200 or not content_type.startswith("text/css") or not css:
        raise SmokeFailure(f"{links[0]} answered {status} {content_type!r} ({len(css)} bytes)")
    step(f"/admin/login/ 200, {links[0]} 200 {content_type} ({len(css)} bytes)")

    # A worker that dies is restarted by scripts/supervise.sh, not the whole stack stopped.
    state["tree"] |= descendants(process.pid)
    old = worker_main_processes(state["tree"])
    if len(old) != 1:
        raise SmokeFailure(f"expected one worker main process, found {old}")
    os.kill(old[0], signal.SIGKILL)
    killed_at = time.monotonic()
    step(f"worker {old[0]} killed (SIGKILL)")

    def restarted():
        state["tree"] |= descendants(process.pid)
        new = [pid for pid in worker_main_processes(state["tree"]) if alive(pid) and pid != old[0]]
        return new if new and "ready." in log_path.read_text(errors="replace").rsplit(f"{old[0]} Killed", 1)[-1] else None

    new = wait_for(restarted, timeout=60, what="the supervisor to restart the worker", process=process)
    # The killed worker's open long poll (up to DPP_SQS_WAIT_SECONDS, 10 s) can still take a message
    # published now and hide it for a whole lease (120 s): submit once that poll has ended.
    time.sleep(max(0.0, killed_at + LONG_POLL_SECONDS + 1 - time.monotonic()))
    resubmit = [f"Idempotency-Key: smoke-after-restart-{uuid.uuid4().hex[:8]}" if value.lower().startswith(
        "idempotency-key:") else value for value in argv]
    result = subprocess.run(resubmit, capture_output=True, text=True, timeout=30)
    second = json.loads(result.stdout)["run_id"]
    wait_for(lambda: completed(second), timeout=RUN_TIMEOUT_SECONDS, what=f"run {second} on the restarted worker")
    step(f"worker restarted as {new[0]}; run {second} COMPLETED on it")


def worker_main_processes(pids: set[int]) -> list[int]:
    """The run worker's main processes (Procfile ``worker``: ``-n runs@%h``), not the webhook or
    periodic workers', nor pool children (their parent is a worker too)."""
    def args_of(pid: int) -> list[bytes]:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return []

    def is_worker(pid: int) -> bool:
        args = args_of(pid)
        return any(arg.endswith(b"celery") for arg in args[:2]) and b"worker" in args

    def is_run_worker(pid: int) -> bool:
        return is_worker(pid) and b"runs@%h" in args_of(pid)

    def parent(pid: int) -> int:
        try:
            return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return 0

    return sorted(pid for pid in pids if alive(pid) and is_run_worker(pid) and not is_worker(parent(pid)))


def stop(state: dict, port: int) -> list[str]:
    """Stop what `make run` started; return what could not be stopped cleanly."""
    problems = []
    process = state.get("process")
    if process is None:
        return problems
    state["tree"] |= descendants(process.pid)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            problems.append(f"`make run` did not stop within {STOP_TIMEOUT_SECONDS} s of SIGINT")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(pid) for pid in state["tree"]):
        time.sleep(0.2)
    left = sorted(pid for pid in state["tree"] if alive(pid))
    if left:
        problems.append(f"processes left after the stop: {left}")
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    if port_in_use(port):
        problems.append(f"port {port} still answers after the stop")
    return problems


def main() -> int:
    if not PYTHON.exists():
        print("smoke: .venv is missing: run it with `make smoke`", file=sys.stderr)
        return 1
    tag = uuid.uuid4().hex[:8]
    port, flower_port = free_port(), free_port()
    database = f"dpp_smoke_{tag}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DPP_", "DJANGO_", "AWS_", "DATABASE_URL", "PYTEST", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"))}
    env.update({
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}",
        "PORT": str(port),
        "DPP_FLOWER_PORT": str(flower_port),
        "DPP_QUEUE_NAME": f"smoke-{tag}",
        "DPP_RESULT_BUCKET": f"smoke-{tag}",
    })
    exists = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc",
                             f"SELECT 1 FROM pg_database WHERE datname = '{database}'"],
                            capture_output=True, text=True, timeout=30)
    if exists.returncode == 0 and exists.stdout.strip():
        print(f"smoke: database {database} exists already: not a fresh start", file=sys.stderr)
        return 1
    log_dir = REPO / ".run"
    log_dir.mkdir(exist_ok=True)
    log_path = log_dir / f"smoke-{tag}.log"
    state: dict = {"database": database, "tree": set()}
    failure = None
    started = time.monotonic()
    try:
        run_smoke(env, port, log_path, state)
    except SmokeFailure as error:
        failure = str(error)
    except Exception as error:  # noqa: BLE001 - reported as the smoke's failure, with the log
        failure = f"{type(error).__name__}: {error}"
    finally:
        problems = stop(state, port)
        if state.get("log"):
            state["log"].close()
        dropped = subprocess.run([str(PYTHON), "scripts/preflight.py", "--drop"], cwd=REPO, env=env,
                                 capture_output=True, text=True, timeout=60)
        if dropped.returncode != 0:
            problems.append(f"could not drop {database}: {dropped.stderr.strip()}")
    if problems:
        step("stop: " + "; ".join(problems))
    else:
        step(f"stopped every process `make run` started ({len(state['tree'])}), port {port} free, "
             f"database {database} dropped")
    if failure or problems:
        tail = log_path.read_text(errors="replace")[-4000:] if log_path.exists() else ""
        print(f"smoke: FAILED: {failure or problems[0]}\n--- tail of {log_path} ---\n{tail}", file=sys.stderr)
        return 1
    step(f"OK in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
