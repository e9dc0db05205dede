"""``dashboards.wsgi:server``, the entry point for a server of one's own: configured by
LABKIT_RUNS_DIR, LABKIT_MODELS and LABKIT_ALLOW_HOSTS, a bad setting one line at import,
and served by a real gunicorn."""

from __future__ import annotations

import importlib
import sys

import pytest
from served import Server, free_port, request

ENTRY = "dashboards.wsgi"


@pytest.fixture(scope="module")
def runs(trained_runs):
    return trained_runs


@pytest.fixture
def entry(monkeypatch):
    """Import ``dashboards.wsgi`` afresh with the given settings; returns the module."""

    def load(**settings: str):
        for name in ("LABKIT_RUNS_DIR", "LABKIT_MODELS", "LABKIT_ALLOW_HOSTS"):
            monkeypatch.delenv(name, raising=False)
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delitem(sys.modules, ENTRY, raising=False)
        return importlib.import_module(ENTRY)

    yield load
    sys.modules.pop(ENTRY, None)


def test_the_server_serves_the_folder_the_environment_names(entry, runs):
    client = entry(LABKIT_RUNS_DIR=str(runs)).server.test_client()
    response = client.get("/")
    assert response.status_code == 200 and b"_dash-renderer" in response.data
    layout = client.get("/_dash-layout").get_data(as_text=True)
    assert '"lenet"' in layout
    assert client.get("/", headers={"Host": "lab.example:8443"}).status_code == 403


def test_allowed_hosts_and_models_come_from_the_environment(entry, runs):
    module = entry(
        LABKIT_RUNS_DIR=str(runs),
        LABKIT_ALLOW_HOSTS="lab.example, other.example",
        LABKIT_MODELS="examples/leaky_net.py:build",
    )
    client = module.server.test_client()
    for host in ("lab.example:8443", "other.example", "localhost:1"):  # any port: a proxy's
        assert client.get("/", headers={"Host": host}).status_code == 200, host
    assert client.get("/", headers={"Host": "third.example"}).status_code == 403
    (model,) = module.app.labkit_store.models
    assert model.spec == "examples/leaky_net.py:build"


@pytest.mark.parametrize(
    ("settings", "line"),
    [
        ({}, "set LABKIT_RUNS_DIR to the folder of runs to serve"),
        ({"LABKIT_RUNS_DIR": "/nonexistent/runs"}, "LABKIT_RUNS_DIR=/nonexistent/runs: no such"),
        ({"LABKIT_RUNS_DIR": "RUNS", "LABKIT_MODELS": "nowhere.py:build"}, "LABKIT_MODELS: "),
    ],
    ids=["unset", "missing folder", "bad model"],
)
def test_a_bad_setting_is_one_line_and_status_4(entry, runs, capsys, settings, line):
    settings = {name: str(runs) if value == "RUNS" else value for name, value in settings.items()}
    with pytest.raises(SystemExit) as exit_:
        entry(**settings)
    assert exit_.value.code == 4  # gunicorn's "App failed to load": it stops, no restart loop
    err = capsys.readouterr().err
    assert err.startswith(f"dashboards.wsgi: error: {line}") and err.count("\n") == 1, err


def gunicorn(*args: str, **env: str) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--no-control-socket"]
    command += ["-b", f"127.0.0.1:{port}", *args, f"{ENTRY}:server"]
    return Server(command, port, **env)


def test_gunicorn_serves_the_entry_point(runs):  # without --preload: imported by each worker
    server = gunicorn("-w", "2", "--threads", "2", LABKIT_RUNS_DIR=str(runs))
    try:
        server.wait()
        status, page = request(server.port)
        assert status == 200 and b"_dash-renderer" in page
        assert request(server.port, headers={"Host": "rebind.example"})[0] == 403
        server.stop()
        assert server.process.returncode == 0
    finally:
        server.kill()


def test_gunicorn_stops_at_once_on_a_bad_folder(tmp_path):
    server = gunicorn("--preload", "-w", "2", LABKIT_RUNS_DIR=str(tmp_path / "missing"))
    try:
        out, err = server.process.communicate(timeout=60)
    finally:
        server.kill()
    assert server.process.returncode == 4  # halted: "App failed to load", no restart loop
    missing = tmp_path / "missing"
    assert err == f"dashboards.wsgi: error: LABKIT_RUNS_DIR={missing}: no such folder\n"
