"""The load benchmark sends what the browser sends: its requests, built from
``/_dash-dependencies``, equal dashboards/callback_requests.py's (the renderer's, as Chromium's
network log shows them), and a slider move's requests are answered."""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from pathlib import Path

import pytest

from dashboards.app import create_app
from dashboards.callback_requests import URL, body

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_dashboard_load as bench  # noqa: E402


@pytest.fixture
def app(tmp_path, trained):
    shutil.copytree(trained, tmp_path / "lenet")
    return create_app(tmp_path)


def test_each_request_is_the_renderers(app):
    dependencies = app.server.test_client().get("/_dash-dependencies").get_json()
    values = {"run.value": "lenet", "record.value": 3, "layer.value": 0, "probe.value": 1}

    def outputs(callback) -> list[str]:
        return [f"{o['id']}.{o['property']}" for o in bench.split_outputs(callback["output"])]

    writers = Counter(output.split("@")[0] for c in dependencies for output in outputs(c))
    compared = 0
    for callback in dependencies:  # by an output no other callback writes (callback_requests')
        own = [output for output in outputs(callback) if writers[output] == 1]
        if not own:
            continue
        expected = body(app, own[0], values, (bench.SLIDER,))
        if not expected["state"]:
            del expected["state"]  # the renderer leaves an empty state out
        assert bench.request_body(callback, values, [bench.SLIDER]) == expected
        compared += 1
    assert compared > 0
    for duplicate in [c for c in dependencies if "@" in c["output"]]:  # allow_duplicate
        sent = bench.request_body(duplicate, values, [])["outputs"]  # split at the last dot,
        sent = sent if isinstance(sent, list) else [sent]  # as the renderer does: @ kept
        assert any("@" in output["property"] for output in sent)


def test_a_slider_move_is_every_server_callback_of_the_slider_and_all_answer(app):
    client = app.server.test_client()
    dependencies = client.get("/_dash-dependencies").get_json()
    values: dict = {}
    bench.layout_values(client.get("/_dash-layout").get_json(), values, "lenet")
    values[bench.RUN_PICKER] = "lenet"
    server_side = [c for c in dependencies if not c.get("clientside_function")]
    for _ in range(2):  # the page settles on its run, as page() has it do
        for callback in [c for c in server_side if bench.takes(c, bench.RUN_PICKER)]:
            request = bench.request_body(callback, values, [bench.RUN_PICKER])
            response = client.post(URL, data=json.dumps(request), content_type="application/json")
            if response.status_code == 200:
                bench.merge_response(values, response.data)
    moves = [callback for callback in server_side if bench.takes(callback, bench.SLIDER)]
    assert len(moves) == 3  # today: the step panels, the kernels, the feature maps
    assert values["layer.value"] is not None  # a settled page: the moves have work to do
    for callback in moves:
        request = bench.request_body(callback, {**values, bench.SLIDER: 5}, [bench.SLIDER])
        response = client.post(URL, data=json.dumps(request), content_type="application/json")
        assert response.status_code == 200, callback["output"]
        bench.merge_response(values, response.data)


def test_the_percentile_is_numpys_default():
    import numpy as np

    latencies = [0.3, 0.1, 0.4, 0.2, 0.9, 0.15]
    for percent in (50, 95):
        expected = np.percentile(latencies, percent)
        assert bench.percentile(sorted(latencies), percent) == pytest.approx(expected)
