"""The dashboard across runs: two runs compared panel by panel, the view in the address,
the newest run by default, step moves that send only what changed, and the run list kept
incrementally (no browser: the browser side is tests/test_dashboard_browser.py)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from figure_checks import validated

from dashboards import callbacks, figures, panels, view
from dashboards.app import create_app
from dashboards.callback_requests import post
from dashboards.runindex import RunIndex
from dashboards.store import RunStore
from labkit.cli import main


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, trained):
    """``long`` (the shared 63-step run) and ``short``, 8 steps at batch 256, made later."""
    root = tmp_path_factory.mktemp("views")
    shutil.copytree(trained, root / "long")
    args = ["train", "--epochs", "1", "--batch-size", "256", "--record-every", "2"]
    assert main([*args, "--no-progress", "--out", str(root / "short")]) == 0
    return root


# ---------------------------------------------------------------------- compared runs


@pytest.mark.parametrize("mode", figures.AXIS_MODES)
def test_every_figure_over_training_overlays_the_compared_run(two_runs, mode):
    store = RunStore(two_runs)
    long, short = store.get("long"), store.get("short")
    alone, _ = panels.run_panels(long, 3, None, mode, 10)
    both, drawn = panels.run_panels(long, 3, short, mode, 10)
    for figure in both:
        validated(figure)
    curves, _, _, flow, updates = both
    assert len(curves.data) == 2 * len(alone[0].data)
    assert {t.name for t in curves.data[3:]} == {f"{t.name} (short)" for t in alone[0].data}
    assert all(t.line.dash == "dot" for t in curves.data[3:])
    layers = len(long.run.layers)
    assert len(flow.data) == 2 * layers and "dotted: short" in flow.layout.title.text
    for mine, theirs in zip(flow.data[:layers], flow.data[layers:], strict=True):
        assert theirs.line.color == mine.line.color and theirs.legendgroup == mine.legendgroup
        assert theirs.showlegend is False  # one legend entry toggles both
    assert len(updates.data) == 2 * len(long.run.update_ratio_names)
    expected = "log" if mode in ("auto", "log") else mode  # 63 steps beside 8: log, auto
    assert drawn["curves"][0] == drawn["gradient-flow"][0] == expected
    x = np.concatenate([np.asarray(t.x, dtype=float) for t in flow.data])
    if mode == "fraction":  # each run against its own share: both end at 100%
        assert x.max() == 1.0 and np.asarray(flow.data[-1].x, dtype=float)[-1] == 1.0
        assert flow.layout.xaxis.tickformat == ".0%"
    else:
        assert x.max() == long.run.steps[-1]
        assert (flow.layout.xaxis.type == "log") == (expected == "log")


def test_the_compared_histogram_is_its_record_at_the_same_step_as_shares(two_runs):
    store = RunStore(two_runs)
    long, short = store.get("long"), store.get("short")
    record = 3
    step = int(long.run.steps[record])
    _, activation, gradient, _ = panels.step_panels(long, record, 0, short)
    mine, theirs = activation.data
    at = int(np.searchsorted(short.run.steps, step, side="right")) - 1
    assert at >= 0 and f"at step {int(short.run.steps[at]):,}" in theirs.name
    np.testing.assert_allclose(theirs.y, figures.share_of(short.hist[at, 0, 0]), rtol=1e-6)
    np.testing.assert_allclose(mine.y, figures.share_of(long.hist[record, 0, 0]), rtol=1e-6)
    assert np.isclose(np.sum(mine.y), 1) and activation.layout.barmode == "overlay"
    validated(activation)
    validated(gradient)
    alone = panels.step_panels(long, record, 0, None)[1]
    np.testing.assert_array_equal(alone.data[0].y, long.hist[record, 0, 0])  # counts alone


def test_a_short_run_is_not_squeezed_on_the_auto_axis():
    assert figures.choose_axis("auto", [60_000, 1_000]).kind == "log"
    assert figures.choose_axis("auto", [1_000, 3_000]).kind == "linear"
    assert figures.choose_axis("auto", [1_000]).kind == "linear"
    assert figures.choose_axis("linear", [60_000, 1_000]).kind == "linear"
    axis = figures.StepAxis("fraction")
    np.testing.assert_allclose(axis.x([10, 50, 100], 100), [0.1, 0.5, 1.0])
    marker = axis.marker(80, 1, 100)[0]
    assert marker["x0"] == 0.8 and marker["label"]["xanchor"] == "right"  # room on the left
    assert figures.LINEAR.marker(10, 1, 100)[0]["label"]["xanchor"] == "left"
    assert figures.StepAxis("log").marker(20, 1, 100)[0]["label"]["xanchor"] == "right"


# ---------------------------------------------------------------------- the address


def test_the_address_is_parsed_leniently():
    assert view.parse_query("?run=a&step=350&layer=03-Convolutional&probe=2&x=1") == {
        "run": "a",
        "step": "350",
        "layer": "03-Convolutional",
        "probe": "2",
    }
    assert view.parse_query(None) == {} and view.parse_query("") == {}
    assert view.parse_query("?step=1&step=2") == {"step": "1"}
    assert view.as_int("350") == 350 and view.as_int("-3") is None and view.as_int("x") is None
    layers = [{"label": "00-Convolutional", "value": 0}, {"label": "01-MaxPool", "value": 1}]
    assert view.pick_layer("01-MaxPool", layers) == 1 and view.pick_layer("1", layers) == 1
    assert view.pick_layer("7", layers) is None and view.pick_layer("nope", layers) is None


def test_the_address_opens_exactly_that_view(two_runs):
    store = RunStore(two_runs)
    search = "?run=long&step=35&layer=03-Convolutional&probe=5&compare=short&axis=fraction"
    name, compare, wanted, notice = callbacks.first_view(store, search)
    assert (name, compare, notice) == ("long", "short", "")
    controls = callbacks.run_controls(store, name, None)
    chosen = callbacks.apply_view(controls, wanted)
    steps = controls["steps"]
    assert steps[chosen["record"]] <= 35 < steps[chosen["record"] + 1]  # at or before
    assert chosen["layer"] == chosen["kernels"] == chosen["maps"] == 3
    assert chosen["probe"] == 5
    only = callbacks.apply_view(controls, {"layer": "01-MaxPool", "kernels": "00-Convolutional"})
    assert only == {"layer": 1, "maps": 1, "kernels": 0}  # a max-pool has no kernels
    odd = callbacks.apply_view(controls, {"step": "0", "layer": "99", "probe": "999"})
    assert odd == {"record": 0}


def test_without_a_run_in_the_address_the_newest_run_is_shown(two_runs, tmp_path):
    for name in ("zzz-older", "aaa-newer"):  # the newest is not the last by name
        shutil.copytree(two_runs / "short", tmp_path / name)
    manifest = tmp_path / "aaa-newer" / "manifest.json"
    document = json.loads(manifest.read_text())
    document["created"] = "2099-01-01T00:00:00+0000"
    manifest.write_text(json.dumps(document))
    store = RunStore(tmp_path)
    assert callbacks.first_view(store, "")[0] == "aaa-newer"
    name, _, _, notice = callbacks.first_view(store, "?run=gone")
    assert name == "aaa-newer" and "no run 'gone'" in notice and "newest" in notice


def test_the_page_loads_the_address_view_through_its_callbacks(two_runs):
    app = create_app(two_runs)
    client = app.server.test_client()
    values = {"url.search": "?run=long&step=40&probe=3"}
    response = post(client, app, "view.data", values)
    answer = response.get_json()["response"]
    assert answer["run"]["value"] == "long" and answer["view"]["data"]["step"] == "40"
    values = {"run.value": "long", "view.data": answer["view"]["data"]}
    chosen = post(client, app, "record.max", values, ["run.value"]).get_json()["response"]
    steps = chosen["records"]["data"]
    assert steps[chosen["record"]["value"]] <= 40 and chosen["probe"]["value"] == 3
    assert chosen["view"]["data"] is None  # applied once


def test_an_address_with_only_an_axis_is_applied_to_its_run_once(two_runs):
    app = create_app(two_runs)
    client = app.server.test_client()
    wanted = {"run": "long", "axis": "log"}
    values = {"run.value": "long", "view.data": wanted}
    answer = post(client, app, "record.max", values, ["run.value"]).get_json()["response"]
    assert answer["axis"]["value"] == "log" and answer["view"]["data"] is None
    values = {"run.value": "short", "view.data": wanted}  # the address named another run
    answer = post(client, app, "record.max", values, ["run.value"]).get_json()["response"]
    assert "axis" not in answer and "view" not in answer


# ---------------------------------------------------------------------- step moves


def test_a_step_move_sends_only_what_the_step_changes(two_runs):
    app = create_app(two_runs)
    client = app.server.test_client()
    page = {"run.value": "long", "record.value": 5, "layer.value": 0, "kernel-layer.value": 0}
    page.update({"kernel-mode.value": "weights", "probe.value": 1, "feature-layer.value": 0})
    for output in ("kernels.figure", "features.figure", "step-label.children"):
        full = post(client, app, output, page, ["run.value"])
        moved = post(client, app, output, page, ["record.value"])
        assert moved.status_code == full.status_code == 200
        assert len(moved.data) < len(full.data)
        for name, value in moved.get_json()["response"].items():
            if "figure" not in value:
                continue
            patch = value["figure"]
            assert patch["__dash_patch_update"] == "__dash_patch_update"
            for operation in patch["operations"]:
                kind, *_, key = operation["location"]
                allowed = {
                    parts for pair in panels.STEP_PARTS.values() for keys in pair for parts in keys
                }
                assert key in allowed, (name, operation["location"])
    store = app.labkit_store
    cached = store.get("long")
    new = panels.kernel_panel(cached, 9, 0, "weights")
    patch = panels.step_patch(new, panels.STEP_PARTS["kernels"]).to_plotly_json()
    old = panels.kernel_panel(cached, 5, 0, "weights").to_dict()
    for operation in patch["operations"]:  # applied to the old step's figure: the new one
        target = old
        *path, last = operation["location"]
        for part in path:
            target = target[part]
        target[last] = operation["params"]["value"]
    assert old == new.to_dict()


def test_only_a_move_of_the_step_alone_is_patched():
    assert panels.only_step_moved({"record.value": "record"})
    assert not panels.only_step_moved({"record.value": "record", "run.value": "run"})
    assert not panels.only_step_moved({"records.data": "records"})  # a live run grew


# ---------------------------------------------------------------------- the run list


def test_the_run_list_is_kept_incrementally(two_runs, tmp_path):
    for index in range(5):
        shutil.copytree(two_runs / "short", tmp_path / f"run-{index}")
    index = RunIndex(tmp_path)
    assert [entry.name for entry in index.refresh()] == [f"run-{i}" for i in range(5)]
    assert index.reopened == 5
    index.refresh()
    assert index.reopened == 5  # nothing changed: nothing reopened
    shutil.copytree(two_runs / "short", tmp_path / "run-new")
    shutil.rmtree(tmp_path / "run-0")
    with open(tmp_path / "run-1" / "metrics.jsonl", "a") as metrics:
        metrics.write('{"step": 999, "epoch": 1, "loss": 0.1}\n')  # a run that changed
    names = [entry.name for entry in index.refresh()]
    assert names == ["run-1", "run-2", "run-3", "run-4", "run-new"]
    assert index.reopened == 7  # the new run and the changed one
    (tmp_path / "run-2" / "manifest.json").write_text("{broken")
    (entry,) = [e for e in index.refresh() if e.name == "run-2"]
    assert not entry.usable and "corrupt" in entry.option["label"]
    os.utime(tmp_path / "run-3")  # a folder's own time is no change
    before = index.reopened
    index.refresh()
    assert index.reopened == before


def test_a_run_being_written_is_summarized_on_every_refresh(two_runs, tmp_path):
    shutil.copytree(two_runs / "short", tmp_path / "live")
    manifest = tmp_path / "live" / "manifest.json"
    document = json.loads(manifest.read_text())
    document["status"] = "running"  # no writer holds it: listed as crashed
    manifest.write_text(json.dumps(document))
    index = RunIndex(tmp_path)
    (entry,) = index.refresh()
    assert entry.status == "crashed" and "crashed" in entry.option["label"]
    index.refresh()
    assert index.reopened == 1  # "crashed" is final until a file changes


# ---------------------------------------------------------------------- what a student sees


def test_a_log_loss_axis_labels_decades_only_when_it_spans_them():
    assert figures.log_ticks(np.array([2.3, 0.01]))["dtick"] == 1  # 2+ decades: 1, 0.1, 0.01
    assert figures.log_ticks(np.array([0.5, 0.3]))["dtick"] == "D2"  # within one: 2 and 5
    assert figures.log_ticks(np.array([np.nan, 0.0]))["dtick"] == "D2"
    curves = figures.training_curves(
        [{"step": s, "loss": 2.0 / s, "accuracy": 0.5} for s in range(1, 500)], 3
    )
    assert curves.layout.yaxis.dtick == 1


def test_the_page_says_what_each_picker_is_and_hides_the_0_based_box(two_runs):
    page = json.dumps(create_app(two_runs).layout().to_plotly_json(), default=str)
    for label in ("probe digit", "layer (its output for the probe)", "convolution", "step axis"):
        assert label in page
    app = create_app(two_runs)
    (slider,) = [c for c in app.layout()._traverse() if getattr(c, "id", None) == "record"]
    assert slider.allow_direct_input is False


def test_a_run_without_checks_says_how_to_make_one(two_runs):
    app = create_app(two_runs)
    client = app.server.test_client()
    values = {"run.value": "short", "gradchecks.page_current": 0, "gradchecks.page_size": 12}
    answer = post(client, app, "gradchecks.data", values, ["run.value"]).get_json()["response"]
    assert answer["gradchecks"]["data"] == []
    assert answer["gradchecks-empty"]["children"] == callbacks.EMPTY_CHECKS
    assert "labkit gradcheck --run" in callbacks.EMPTY_CHECKS


def test_the_feature_panel_names_classes_and_does_not_repeat_a_reshape(two_runs):
    cached = RunStore(two_runs).get("long")
    layers = cached.run.layers
    classes = [entry["class"] for entry in layers]
    _, _, last = panels.feature_panel(cached, 3, 2, len(layers) - 1)
    assert "class" in last.layout.xaxis.title.text
    reshape = classes.index("Reshape")
    _, _, flat = panels.feature_panel(cached, 3, 2, reshape)
    assert flat.data == () and layers[reshape - 1]["key"] in flat.layout.annotations[0].text
    _, _, maps = panels.feature_panel(cached, 3, 2, 0)  # signed conv outputs: centred on 0
    assert maps.data[0].zmid == 0
    for figure in (last, flat, maps):
        validated(figure)
