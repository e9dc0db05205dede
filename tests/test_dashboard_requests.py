"""What the dashboard's server refuses, asked as a browser (or an attacker) would: crafted
callback requests through the Flask test client (bodies: dashboards/callback_requests.py)."""

from __future__ import annotations

import io
import logging
import shutil

import pytest

from dashboards import callbacks
from dashboards.app import create_app
from dashboards.callback_requests import CLICK, URL, answer, post
from dashboards.store import RunStore
from labkit.recording import Recording


@pytest.fixture
def nest(tmp_path, trained):
    """``tmp/outer`` is a run and holds the runs folder ``tmp/outer/runs``: ``lenet``, a
    link ``alias`` to it, and a link ``escape`` to the run ``tmp/elsewhere``."""
    outer = tmp_path / "outer"
    shutil.copytree(trained, outer)
    runs = outer / "runs"
    runs.mkdir()
    shutil.copytree(trained, runs / "lenet")
    shutil.copytree(trained, tmp_path / "elsewhere")
    (runs / "escape").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (runs / "alias").symlink_to(runs / "lenet", target_is_directory=True)
    return tmp_path, runs


@pytest.fixture
def opened(monkeypatch):
    """Every run folder the dashboard opens."""
    import dashboards.store

    paths, real = [], dashboards.store.open_recording

    def spy(path, *args, **kwargs):
        paths.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(dashboards.store, "open_recording", spy)
    return paths


def stored(folder) -> list:
    """Every gradient-check report under ``folder`` (links not followed)."""
    return sorted(folder.rglob("gradcheck-*.json"))


def click(name, record=0, n=1) -> dict:
    return {"run.value": name, "run-check.n_clicks": n, "record.value": record}


PANELS = {  # one output of each callback that takes a run id, with the page's other values
    "record.max": {"live.n_intervals": 0},
    "step-label.children": {"record.value": 0, "layer.value": 0},
    "curves.figure": {"record.value": 0, "layer.value": 0, "axis.value": "auto"},
    "kernels.figure": {"record.value": 0, "kernel-layer.value": 0, "kernel-mode.value": "weights"},
    "features.figure": {"record.value": 0, "probe.value": 0, "feature-layer.value": 0},
    "gradchecks.data": {"gradchecks.page_current": 0, "gradchecks.page_size": 12},
}


@pytest.mark.parametrize(
    "bad", ["..", "../elsewhere", "../../elsewhere", "ABSOLUTE", "escape", "lenet/..", "", 5]
)
def test_a_crafted_run_id_gets_a_message_and_no_file_access(nest, opened, bad):
    tmp, runs = nest
    name = str(tmp / "elsewhere") if bad == "ABSOLUTE" else bad
    app = create_app(runs)
    client = app.server.test_client()
    response = post(client, app, CLICK, click(name), ["run-check.n_clicks"])
    assert response.status_code == 200
    assert repr(name) in answer(response, CLICK)
    for output, values in PANELS.items():
        response = post(client, app, output, {"run.value": name, **values}, ["run.value"])
        assert response.status_code in (200, 204), output
    compare = {"run.value": "lenet", "compare.value": name, **PANELS["step-label.children"]}
    response = post(client, app, "step-label.children", compare, ["compare.value"])
    assert repr(name) in answer(response, "step-label.children")
    assert stored(tmp) == []  # no report written anywhere
    assert all(path.resolve().parent == runs.resolve() for path in opened)
    assert not any(str(path).endswith(("escape", "elsewhere", "..")) for path in opened)


def test_a_listed_run_and_a_link_inside_the_folder_are_checked(nest):
    tmp, runs = nest
    options = {option["value"]: option for option in callbacks.run_options(RunStore(runs))}
    assert options["escape"]["disabled"] and "links outside" in options["escape"]["label"]
    assert not options["alias"].get("disabled") and not options["lenet"].get("disabled")
    app = create_app(runs)
    client = app.server.test_client()
    for name in ("lenet", "alias"):
        response = post(client, app, CLICK, click(name, 2), ["run-check.n_clicks"])
        assert answer(response, CLICK).endswith("all passed"), name
    assert [path.parent for path in stored(tmp)] == [runs / "lenet" / "gradchecks"] * 2


def test_a_run_whose_report_folder_links_out_is_not_checked(nest):
    tmp, runs = nest
    shutil.rmtree(runs / "lenet" / "gradchecks")
    (tmp / "reports-elsewhere").mkdir()
    (runs / "lenet" / "gradchecks").symlink_to(tmp / "reports-elsewhere")
    app = create_app(runs)
    response = post(app.server.test_client(), app, CLICK, click("lenet", 2), ["run-check.n_clicks"])
    assert answer(response, CLICK) == "'lenet' has a gradchecks folder that links outside the run"
    assert list((tmp / "reports-elsewhere").iterdir()) == []


def test_a_foreign_host_is_refused_before_anything_runs(nest):
    tmp, runs = nest
    app = create_app(runs)
    client = app.server.test_client()
    assert client.get("/").status_code == 200  # the test client's Host: localhost
    for host in ("localhost:8050", "127.0.0.1:8050", "[::1]:8050", "LOCALHOST:8050"):
        assert client.get("/", headers={"Host": host}).status_code == 200, host
    for host in (
        "rebind.example",
        "rebind.example:8050",
        "127.0.0.1.rebind.example:8050",
        "localhost.rebind.example",
        "localhost:8050@rebind.example",
    ):
        assert client.get("/", headers={"Host": host}).status_code == 403, host
    evil = {"Host": "rebind.example:8050"}
    response = post(client, app, CLICK, click("lenet", 2), ["run-check.n_clicks"], headers=evil)
    assert response.status_code == 403 and b"--allow-host" in response.data
    assert stored(tmp) == []  # the check never ran


def test_the_served_host_and_port_and_allowed_names(nest):
    _, runs = nest
    app = create_app(runs, hosts=["lab.example"], port=8050)
    client = app.server.test_client()
    for host, status in [
        ("lab.example:8050", 200),
        ("localhost:8050", 200),
        ("lab.example:8051", 403),
        ("localhost:8051", 403),
        ("other.example:8050", 403),
    ]:
        assert client.get("/", headers={"Host": host}).status_code == status, host
    anyone = create_app(runs, hosts=["*"], port=8050).server.test_client()
    assert anyone.get("/", headers={"Host": "other.example:1"}).status_code == 200
    on_80 = create_app(runs, port=80).server.test_client()
    assert on_80.get("/", headers={"Host": "localhost"}).status_code == 200  # no port: 80


class Body(io.RawIOBase):
    """A request body of zeros that counts what the server reads (refusing past 16 MB)."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.read_bytes > 16 * 2**20:
            raise AssertionError("the server read past 16 MB of the body")
        buffer[:] = bytes(len(buffer))
        self.read_bytes += len(buffer)
        return len(buffer)


def test_an_oversized_body_is_refused_unread(nest):
    _, runs = nest
    client = create_app(runs).server.test_client()
    declared = Body()  # the test client would seek an input_stream: hand the server ours
    environ = {"wsgi.input": declared, "CONTENT_LENGTH": str(200 * 2**20)}
    response = client.post(URL, content_type="application/json", environ_overrides=environ)
    assert response.status_code == 413 and declared.read_bytes == 0
    chunked = Body()  # no Content-Length (chunked, as the server marks it): read to the limit
    environ = {"wsgi.input": chunked, "CONTENT_LENGTH": "", "wsgi.input_terminated": True}
    response = client.post(URL, content_type="application/json", environ_overrides=environ)
    assert response.status_code == 413 and chunked.read_bytes <= 5 * 2**20


def test_a_failing_panel_says_so_and_the_log_has_the_traceback(nest, monkeypatch, caplog):
    _, runs = nest
    app = create_app(runs)
    client = app.server.test_client()

    def unreadable(self, *args, **kwargs):
        raise OSError("kernels chunk unreadable\nsecond line")

    monkeypatch.setattr(Recording, "kernels", unreadable)
    values = {"run.value": "lenet", **PANELS["kernels.figure"]}
    with caplog.at_level(logging.ERROR):
        response = post(client, app, "kernels.figure", values, ["run.value"])
    assert response.status_code == 200
    (note,) = answer(response, "kernels.figure")["layout"]["annotations"]
    text = note["text"].replace("<br>", " ")  # wrapped to fit the panel
    assert text == "this panel failed: OSError: kernels chunk unreadable"
    (record,) = [r for r in caplog.records if r.exc_info]
    assert isinstance(record.exc_info[1], OSError) and "kernels" in record.getMessage()


def test_every_output_of_a_failing_panel_says_so(nest, monkeypatch):
    _, runs = nest
    app = create_app(runs)
    client = app.server.test_client()

    def broken(*args, **kwargs):
        raise ValueError("no gradient norms")

    monkeypatch.setattr("dashboards.figures.gradient_flow", broken)
    values = {"run.value": "lenet", **PANELS["curves.figure"]}
    response = post(client, app, "curves.figure", values, ["run.value"])
    assert response.status_code == 200
    message = "this panel failed: ValueError: no gradient norms"
    for output in ("curves.figure", "gradient-flow.figure"):
        figure = answer(response, output)
        assert figure["layout"]["annotations"][0]["text"].replace("<br>", " ") == message
    monkeypatch.setattr("dashboards.figures.histogram_at_step", broken)
    values = {"run.value": "lenet", **PANELS["step-label.children"]}
    response = post(client, app, "step-label.children", values, ["run.value"])
    assert answer(response, "step-label.children") == message


def test_a_failure_is_one_line_and_a_labkit_error_keeps_its_own():
    from dashboards.failsafe import failure_text
    from labkit.errors import LabkitError

    assert failure_text(KeyError("probe")) == "this panel failed: KeyError: 'probe'"
    assert failure_text(RuntimeError()) == "this panel failed: RuntimeError"
    unreadable = LabkitError("runs/r1/data.zarr/features/00-Conv: cannot read (bad chunk)")
    assert failure_text(unreadable) == f"this panel failed: {unreadable}"
    assert len(failure_text(ValueError("x" * 1000))) < 200


def test_a_message_in_a_figure_is_escaped_and_wrapped():
    from dashboards.failsafe import LINE, figure_text

    text = figure_text("this panel failed: TypeError: <lambda>() takes 2 positional arguments")
    assert "<lambda>" not in text and "&lt;lambda&gt;" in text
    assert all(len(line) <= LINE + 8 for line in text.split("<br>"))  # + an escape's length
