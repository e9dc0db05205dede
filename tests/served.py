"""A dashboard server in a subprocess, as a user starts it, for tests that need real HTTP:
a free port from the OS, readiness polled against a deadline, and the worker processes."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READY_SECONDS = 60  # a loaded 2-core machine can take this long to import Dash twice


def free_port() -> int:
    """A loopback port nobody listens on (the OS's choice)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment(**extra: str) -> dict:
    """The tests' environment for a child, importing this checkout first."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **extra}


def request(port: int, method: str = "GET", path: str = "/", body=None, headers=None):
    """``(status, body)`` of one request to the server on ``port``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class Server:
    """A server process started with ``command`` on ``port``; ``wait()`` until it answers."""

    def __init__(self, command: list[str], port: int, **env: str) -> None:
        self.port = port
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(**env),
            start_new_session=True,  # a test's Ctrl-C is not the server's
        )

    def wait(self) -> Server:
        """Return once ``GET /`` answers; AssertionError with its output if it ends first."""
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                out, err = self.process.communicate()
                raise AssertionError(f"exit {self.process.returncode}:\n{out}\n{err}")
            try:
                request(self.port)
                return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"no answer on port {self.port} in {READY_SECONDS} s")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> tuple[str, str]:
        """Send ``sig`` and wait for the exit; ``(stdout, stderr)``."""
        self.process.send_signal(sig)
        return self.process.communicate(timeout=timeout)

    def kill(self) -> None:
        """What a failed test leaves: the process group killed, whatever its state."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.communicate()


def dashboard(runs: Path, *args: str, port: int | None = None, **env: str) -> Server:
    """``labkit dashboard RUNS ARGS`` on a free port (or ``port``), started."""
    port = port or free_port()
    command = [sys.executable, "-m", "labkit.cli", "dashboard", str(runs), "--port", str(port)]
    return Server([*command, *args], port, **env)


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def workers(pid: int, count: int) -> list[int]:
    """The ``count`` children of ``pid``, once it has forked them all (the first may answer
    before the last is forked); AssertionError with what there is after the deadline."""
    deadline = time.monotonic() + READY_SECONDS
    while len(found := children(pid)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(found) == count, found
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"
