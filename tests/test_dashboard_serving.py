"""``labkit dashboard --workers N`` as a user runs it: gunicorn in a subprocess, over real
HTTP: the page, a callback, the Host guard and the body cap, quiet logs, and a stop by
SIGTERM or Ctrl-C that leaves no worker behind."""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import sys

import dash
import pytest
from served import alive, dashboard, free_port, request, workers

from dashboards.app import create_app, serve
from dashboards.callback_requests import CLICK, URL, body
from dashboards.guard import MAX_BODY_BYTES
from labkit.cli import main

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads workers from /proc")
RUN_LIST = "run.options"  # the run list's callback: the page's poll, every 3 s


@pytest.fixture(scope="module")
def runs(trained_runs):
    return trained_runs


@pytest.fixture
def started(runs):
    """Start ``labkit dashboard RUNS ARGS`` (ready); whatever a test leaves is killed."""
    servers = []

    def start(*args: str):
        servers.append(dashboard(runs, *args))
        return servers[-1].wait()

    yield start
    for server in servers:
        server.kill()


def post_callback(port: int, runs, output: str, values: dict, changed=()) -> tuple[int, dict]:
    """``(status, answer)`` of the callback writing ``output``, posted as the page does."""
    request_body = json.dumps(body(create_app(runs), output, values, tuple(changed)))
    headers = {"Content-Type": "application/json"}
    status, data = request(port, "POST", URL, request_body.encode(), headers)
    return status, json.loads(data)["response"] if status == 200 else {}


def post_run_list(port: int, runs) -> tuple[int, dict]:
    """The run list's callback request, as the page sends it on load."""
    return post_callback(port, runs, RUN_LIST, {"live.n_intervals": 0})


def test_two_workers_serve_the_page_callbacks_and_a_check_behind_the_guard(runs, started):
    server = started("--workers", "2")
    port = server.port
    status, page = request(port)
    assert status == 200 and b"_dash-renderer" in page
    for _ in range(4):  # a keep-alive-less client lands on either worker
        status, answer = post_run_list(port, runs)
        assert status == 200
        assert [option["value"] for option in answer["run"]["options"]] == ["lenet"]
    click = {"run.value": "lenet", "run-check.n_clicks": 1, "record.value": 1}
    status, answer = post_callback(port, runs, CLICK, click, ["run-check.n_clicks"])
    assert status == 200  # NumPy, BLAS and the user's code work in a forked worker
    assert answer["check-status"]["children"].endswith("all passed")
    status, refusal = request(port, headers={"Host": f"rebind.example:{port}"})
    assert status == 403 and b"--allow-host" in refusal
    assert request(port, headers={"Host": f"localhost:{port + 1}"})[0] == 403  # another port

    declared = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    declared.putrequest("POST", URL)
    declared.putheader("Content-Type", "application/json")
    declared.putheader("Content-Length", str(200 * 2**20))
    declared.endheaders(b"[")  # and never the rest: refused on the header alone
    assert declared.getresponse().status == 413
    declared.close()
    chunked = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    big = b" " * (MAX_BODY_BYTES + 1)
    headers = {"Content-Type": "application/json"}
    chunked.request("POST", URL, body=iter([big]), headers=headers, encode_chunked=True)
    assert chunked.getresponse().status == 413
    chunked.close()
    out, err = server.stop()
    assert server.process.returncode == 143, err


def test_without_verbose_no_line_is_logged_per_request(runs, started):
    server = started()  # the default: one gunicorn worker
    for _ in range(3):
        request(server.port)
        assert post_run_list(server.port, runs)[0] == 200
    out, err = server.stop()
    assert out.splitlines() == [
        f"labkit dashboard for {runs} on http://127.0.0.1:{server.port}/ (Ctrl-C stops)"
    ]
    assert err == ""  # no request lines, no development-server warning, no start-up lines


def test_with_verbose_each_request_is_logged(runs, started):
    server = started("--verbose")
    assert post_run_list(server.port, runs)[0] == 200
    out, err = server.stop()
    assert sum('"GET / HTTP/1.1" 200' in line for line in out.splitlines()) >= 1
    assert sum(f'"POST {URL} HTTP/1.1" 200' in line for line in out.splitlines()) == 1
    assert "Booting worker" in err
    assert "Using worker: dashboards.gunicorn_app.DashboardWorker" in err


@pytest.mark.parametrize(
    ("sig", "group", "status"),
    [(signal.SIGTERM, False, 143), (signal.SIGINT, True, 130)],
    ids=["SIGTERM to the master", "Ctrl-C to the process group"],
)
def test_a_stop_ends_the_master_and_every_worker(started, sig, group, status):
    server = started("--workers", "2")
    master = server.process.pid
    forked = workers(master, 2)
    if group:  # what a terminal's Ctrl-C does: the signal reaches every process of the group
        os.killpg(master, sig)
        out, err = server.process.communicate(timeout=60)
    else:
        out, err = server.stop(sig)
    assert server.process.returncode == status, err
    assert "Traceback" not in err and err == ""
    assert [pid for pid in forked if alive(pid)] == []


def test_more_than_one_worker_without_gunicorn_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "gunicorn.app.base", None)  # import fails, as on Windows
    monkeypatch.setattr(sys, "platform", "win32")
    assert main(["dashboard", str(tmp_path), "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "labkit dashboard: error: --workers 2 needs gunicorn, which runs on Linux and macOS\n"
    )
    served = []  # one worker: Dash's own server instead, quietly
    monkeypatch.setattr(dash.Dash, "run", lambda app, **options: served.append(options))
    assert main(["dashboard", str(tmp_path), "--port", str(free_port())]) == 0
    assert len(served) == 1


@pytest.mark.parametrize("text", ["-1", "65", "x", "1.5"])
def test_a_bad_worker_count_is_one_line(text, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["dashboard", "--workers", text])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--workers" in err and len(err.strip().splitlines()) == 1, err


def test_dashs_own_server_logs_no_request_unless_verbose(tmp_path, monkeypatch):
    werkzeug = logging.getLogger("werkzeug")
    monkeypatch.setattr(werkzeug, "level", logging.NOTSET)
    monkeypatch.setattr(dash.Dash, "run", lambda app, **options: None)
    serve(tmp_path, port=8050, verbose=True)
    assert werkzeug.level == logging.NOTSET  # as it was: Werkzeug then logs at INFO
    serve(tmp_path, port=8050)
    assert werkzeug.level == logging.WARNING  # its request lines are INFO
    with pytest.raises(ValueError, match="jupyter_mode"):
        serve(tmp_path, jupyter_mode="inline", workers=2)
