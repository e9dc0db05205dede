"""What the dashboard's server refuses, asked as a browser (or an attacker) would: crafted
callback requests through the Flask test client (bodies built in tests/dash_requests.py)."""

from __future__ import annotations

import logging
import shutil

import pytest
from dash_requests import answer, post

from dashboards.app import create_app
from labkit.cli import main
from labkit.recording import Recording


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    args = ["train", "--epochs", "1", "--record-every", "20", "--no-progress"]
    assert main([*args, "--out", str(root / "run")]) == 0
    return root / "run"


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


PANELS = {  # one output of each callback that takes a run id, with the page's other values
    "record.max": {"live.n_intervals": 0},
    "step-label.children": {"record.value": 0, "layer.value": 0},
    "kernels.figure": {"record.value": 0, "kernel-layer.value": 0, "kernel-mode.value": "weights"},
    "features.figure": {"record.value": 0, "probe.value": 0, "feature-layer.value": 0},
    "gradchecks.data": {"gradchecks.page_current": 0, "gradchecks.page_size": 12},
}


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
    assert note["text"] == "this panel failed: OSError: kernels chunk unreadable"
    (record,) = [r for r in caplog.records if r.exc_info]
    assert isinstance(record.exc_info[1], OSError) and "kernels" in record.getMessage()


def test_every_output_of_a_failing_panel_says_so(nest, monkeypatch):
    _, runs = nest
    app = create_app(runs)
    client = app.server.test_client()

    def broken(*args, **kwargs):
        raise ValueError("no gradient norms")

    monkeypatch.setattr("dashboards.figures.gradient_flow", broken)
    values = {"run.value": "lenet", **PANELS["step-label.children"]}
    response = post(client, app, "step-label.children", values, ["run.value"])
    assert response.status_code == 200
    message = "this panel failed: ValueError: no gradient norms"
    assert answer(response, "step-label.children") == message
    figure = answer(response, "gradient-flow.figure")
    assert figure["layout"]["annotations"][0]["text"] == message
