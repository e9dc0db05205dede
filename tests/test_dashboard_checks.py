"""The check button and the gradient-check table, through the Flask test client; and what
``labkit dashboard`` says about where it listens."""

from __future__ import annotations

import math
import shutil
import threading

import pytest

import dashboards.serving
from dashboards import callbacks
from dashboards.app import create_app, free_port
from dashboards.callback_requests import CLICK, answer, post
from dashboards.store import RunStore
from labkit.cli import main
from labkit.runs import write_gradcheck

TABLE = "gradchecks.data"


@pytest.fixture
def runs(tmp_path, trained):
    shutil.copytree(trained, tmp_path / "lenet")
    return tmp_path


def click(record: int, n: int = 1) -> dict:
    return {"run.value": "lenet", "run-check.n_clicks": n, "record.value": record}


def reports(runs) -> list:
    return sorted((runs / "lenet" / "gradchecks").glob("gradcheck-*.json"))


def test_a_second_click_while_a_check_runs_is_refused(runs, monkeypatch):
    import labkit.checks

    real, started, release = labkit.checks.check_all, threading.Event(), threading.Event()

    def first_one_waits(*args, **kwargs):
        if not started.is_set():
            started.set()
            assert release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(labkit.checks, "check_all", first_one_waits)
    app = create_app(runs)
    first = {}

    def click_first():
        response = post(app.server.test_client(), app, CLICK, click(2), ["run-check.n_clicks"])
        first["status"] = answer(response, CLICK)

    thread = threading.Thread(target=click_first)
    thread.start()
    try:
        assert started.wait(60)
        second = post(app.server.test_client(), app, CLICK, click(2, 2), ["run-check.n_clicks"])
    finally:
        release.set()
        thread.join(60)
    assert answer(second, CLICK) == "a check is already running for this run"
    assert first["status"].endswith("all passed")
    assert len(reports(runs)) == 1
    other = post(app.server.test_client(), app, CLICK, click(3, 3), ["run-check.n_clicks"])
    assert answer(other, CLICK).endswith("all passed")  # the first one's lock is gone
    assert len(reports(runs)) == 2


def test_the_button_is_disabled_while_its_check_runs(runs):
    app = create_app(runs)
    (spec,) = [s for s in app._callback_list if "check-status.children" in s["output"]]
    assert spec["running"] == {
        "running": {"run-check.disabled": True},
        "runningOff": {"run-check.disabled": False},
    }


def test_the_same_check_at_the_same_step_is_stored_once(runs):
    app = create_app(runs)
    client = app.server.test_client()
    step = int(RunStore(runs).get("lenet").run.steps[2])
    first = answer(post(client, app, CLICK, click(2), ["run-check.n_clicks"]), CLICK)
    again = answer(post(client, app, CLICK, click(2, 2), ["run-check.n_clicks"]), CLICK)
    assert first == f"step {step:,}: all passed"
    assert again == f"step {step:,}: all passed (the same as the stored report)"
    assert len(reports(runs)) == 1
    post(client, app, CLICK, click(3, 3), ["run-check.n_clicks"])
    assert len(reports(runs)) == 2  # another step is another report


@pytest.fixture
def many_reports(runs):
    """30 stored reports at steps 0..29, with growing errors; returns the table's rows."""
    cached = RunStore(runs).get("lenet")
    callbacks.check_at_step(cached, 0)
    cached.refresh()
    (document,) = cached.run.gradchecks
    for path in reports(runs):
        path.unlink()
    for step in range(30):
        for report in document["reports"]:
            for check in report["checks"]:
                check["max_abs_error"] = step * 1e-9
        write_gradcheck(runs / "lenet", {**document, "step": step})
    return len(callbacks.gradcheck_rows(RunStore(runs).get("lenet")))


def page(app, client, current, size=12, sort_by=None, changed=("run.value",)):
    values = {
        "run.value": "lenet",
        "record.value": 0,
        "gradchecks.page_current": current,
        "gradchecks.page_size": size,
        "gradchecks.sort_by": sort_by or [],
    }
    response = post(client, app, TABLE, values, changed)
    assert response.status_code == 200
    return response


def test_a_page_load_sends_one_page_of_gradcheck_rows(runs, many_reports):
    rows = many_reports
    app = create_app(runs)
    client = app.server.test_client()
    layout = client.get("/_dash-layout").get_json()
    assert not find(layout, "gradchecks")["props"].get("data")  # no rows in the page itself
    loaded = page(app, client, 0, changed=())  # the page's first request: nothing changed
    assert len(answer(loaded, TABLE)) == 12
    assert answer(loaded, "gradchecks.page_count") == math.ceil(rows / 12)
    newest = answer(loaded, TABLE)[0]
    second = answer(page(app, client, 1, changed=("gradchecks.page_current",)), TABLE)
    assert len(second) == 12 and second[0] != newest
    last = answer(page(app, client, rows // 12, changed=("gradchecks.page_current",)), TABLE)
    assert len(last) == rows % 12


def test_the_gradcheck_table_sorts_every_row_on_the_server(runs, many_reports):
    app = create_app(runs)
    client = app.server.test_client()
    by_error = [{"column_id": "max_abs_error", "direction": "asc"}]
    first = answer(page(app, client, 0, sort_by=by_error, changed=("gradchecks.sort_by",)), TABLE)
    assert {row["max_abs_error"] for row in first} == {"0"}  # step 0's, from 30 reports
    by_error[0]["direction"] = "desc"
    top = answer(page(app, client, 0, sort_by=by_error, changed=("gradchecks.sort_by",)), TABLE)
    assert float(top[0]["max_abs_error"]) == pytest.approx(29e-9)


def find(tree, component_id):
    """The component with ``component_id`` in a layout's JSON."""
    if isinstance(tree, dict):
        if tree.get("props", {}).get("id") == component_id:
            return tree
        children = list(tree.values())
    elif isinstance(tree, list):
        children = tree
    else:
        return None
    for child in children:
        found = find(child, component_id)
        if found is not None:
            return found
    return None


def test_a_port_out_of_range_is_one_line(capsys):
    for port in ("70000", "0", "-1", "x"):
        with pytest.raises(SystemExit) as exit_:
            main(["dashboard", "--port", port])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "--port" in err and len(err.strip().splitlines()) == 1, err


@pytest.fixture
def served(monkeypatch):
    """The app ``labkit dashboard`` would serve, and where (without serving it)."""
    seen = {}

    def run(server, *, host, port, **kwargs):
        seen.update(server=server, host=host, port=port)
        return 0

    monkeypatch.setattr(dashboards.serving, "run", run)
    return seen


def test_listening_beyond_this_machine_warns_and_names_are_allowed(tmp_path, capsys, served):
    port = free_port("0.0.0.0", 18650)
    args = ["dashboard", str(tmp_path), "--host", "0.0.0.0", "--port", str(port)]
    assert main([*args, "--allow-host", "lab.example"]) == 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "no authentication" in err and "start checks" in err
    client = served["server"].test_client()
    assert client.get("/", headers={"Host": f"lab.example:{port}"}).status_code == 200
    assert client.get("/", headers={"Host": f"localhost:{port}"}).status_code == 200
    assert client.get("/", headers={"Host": f"other.example:{port}"}).status_code == 403


def test_on_localhost_nothing_is_said(tmp_path, capsys, served):
    port = free_port("127.0.0.1", 18650)
    assert main(["dashboard", str(tmp_path), "--port", str(port)]) == 0
    assert capsys.readouterr().err == ""
    assert served["host"] == "127.0.0.1"


def test_a_port_left_in_time_wait_by_a_stopped_dashboard_is_free():
    """A restarted dashboard may bind where the last one's connections linger (the server
    sets SO_REUSEADDR); only a port someone listens on is in use."""
    import socket

    from labkit.commands.dashboard import check_port

    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Werkzeug's does
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = listener.accept()
        served.close()  # the server's side closes first: its address stays in TIME_WAIT
        client.close()
    check_port("127.0.0.1", port)
