"""The dashboard's app and callbacks, called directly (no browser)."""

from __future__ import annotations

import json
import socket

import numpy as np
import plotly.graph_objects as go
import pytest

from dashboards import callbacks, panels
from dashboards.app import create_app
from dashboards.store import RunStore
from labkit.cli import main


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash")
    args = ["train", "--epochs", "1", "--record-every", "20", "--no-progress"]
    assert main([*args, "--out", str(root / "lenet")]) == 0
    (root / "broken").mkdir()
    (root / "broken" / "manifest.json").write_text("{not json")
    return root


def layout_text(app) -> str:
    return json.dumps(app.layout().to_plotly_json(), default=str)


def test_an_empty_or_missing_folder_says_how_to_make_a_run(tmp_path):
    for folder in (tmp_path, tmp_path / "missing"):
        text = layout_text(create_app(folder))
        assert "no runs yet" in text and "labkit train --out" in text


def test_runs_are_listed_and_a_corrupt_one_is_shown_disabled(runs_dir):
    options = {o["value"]: o for o in callbacks.run_options(RunStore(runs_dir))}
    assert options["lenet"]["label"] == "lenet (completed, --model lenet)"
    assert options["broken"]["disabled"] is True and "corrupt" in options["broken"]["label"]
    assert "lenet (completed" in repr(create_app(runs_dir).layout())
    assert callbacks.first_view(RunStore(runs_dir), "")[0] == "lenet"  # the only usable run


def test_controls_cover_every_record_layer_and_probe(runs_dir):
    store = RunStore(runs_dir)
    controls = callbacks.run_controls(store, "lenet", None)
    run = store.get("lenet").run
    assert controls["steps"] == [int(s) for s in run.steps]
    assert controls["record"] == controls["max"] == len(run.steps) - 1
    assert [o["label"] for o in controls["convolutions"]] == [
        "00-Convolutional",
        "03-Convolutional",
    ]
    assert len(controls["layers"]) == 10 and len(controls["probes"]) == 16
    last = len(run.steps) - 1
    assert callbacks.run_controls(store, "lenet", 2, last + 1)["record"] == 2  # stays put
    assert callbacks.run_controls(store, "lenet", last - 1, last + 1)["record"] == last - 1
    assert callbacks.run_controls(store, "lenet", last - 1, last)["record"] == last  # follows


@pytest.mark.parametrize(
    ("trigger", "record", "playing", "expected"),
    [
        ("back", 3, False, 2),
        ("back", 0, False, 0),
        ("forward", 3, False, 4),
        ("forward", 9, False, 9),
        ("player", 4, True, 5),
        ("player", 9, True, 0),
        ("player", 4, False, 4),
    ],
)
def test_player_buttons(trigger, record, playing, expected):
    assert callbacks.next_record(trigger, record, list(range(10)), playing) == expected


def test_every_panel_of_a_step(runs_dir):
    cached = RunStore(runs_dir).get("lenet")
    steps = cached.run.steps
    label, *figures, warnings = panels.step_panels(cached, 3, 1, None)
    assert label.startswith(f"step {int(steps[3]):,} · epoch 1 · record 4/")
    assert all(isinstance(f, go.Figure) and f.data for f in figures)
    assert isinstance(warnings, list)
    later = panels.step_panels(cached, len(steps) - 1, 1, None)
    assert later[0] != label
    assert list(later[1].data[0].y) != list(figures[0].data[0].y)  # the histogram follows
    over_training, drawn = panels.run_panels(cached, 1, None, "auto", 3)
    assert len(over_training) == len(panels.FIGURES_OVER_TRAINING) == len(drawn)
    assert all(isinstance(f, go.Figure) and f.data for f in over_training)
    for figure in over_training:  # the marker, first of the shapes, at the step
        assert figure.layout.shapes[0].x0 == int(steps[3])


def test_kernels_and_their_change_since_the_first_record(runs_dir):
    cached = RunStore(runs_dir).get("lenet")
    first = panels.kernel_panel(cached, 0, 0, "change")
    assert np.nanmax(np.abs(np.asarray(first.data[0].z, dtype=float))) == 0
    last = panels.kernel_panel(cached, len(cached.run.steps) - 1, 0, "change")
    assert np.nanmax(np.abs(np.asarray(last.data[0].z, dtype=float))) > 0
    weights = panels.kernel_panel(cached, 2, 3, "weights")
    assert "03-Convolutional" in weights.layout.title.text


def test_feature_panel_shows_the_probe_and_its_probabilities(runs_dir):
    cached = RunStore(runs_dir).get("lenet")
    image, probs, maps = panels.feature_panel(cached, 1, 4, 2)
    stored = cached.run.probabilities(int(cached.run.steps[1]))[4]
    np.testing.assert_allclose(np.asarray(probs.data[0].y, dtype=float), stored, rtol=1e-6)
    assert image.data and maps.data


def test_a_fast_check_at_a_step_is_stored_and_listed(runs_dir):
    cached = RunStore(runs_dir).get("lenet")
    assert callbacks.gradcheck_rows(cached) == []
    status = callbacks.check_at_step(cached, 2)
    step = int(cached.run.steps[2])
    assert status == f"step {step:,}: all passed"
    cached.refresh()
    rows = callbacks.gradcheck_rows(cached)
    assert rows and any("Convolutional" in str(row) for row in rows)
    keys = [e["key"] for e in cached.run.layers]
    assert {row["layer"] for row in rows} <= {*keys, "network"}  # one name for a layer
    assert {row["step"] for row in rows} == {f"{step:,}"} and {row["report"] for row in rows} == {
        "#1"
    }
    (document,) = cached.run.gradchecks  # the document labkit gradcheck writes, and the step
    keys = {"subject", "created", "mode", "oracle", "seconds", "passed", "reports", "step"}
    assert set(document) == keys
    assert (document["step"], document["mode"], document["passed"]) == (step, "fast", True)
    assert document["subject"] == f"run lenet at step {step}"
    subjects = [report["subject"] for report in document["reports"]]
    assert subjects == [e["key"] for e in cached.run.layers] + ["network"]


def test_comparing_a_run_with_itself_overlays_nothing(runs_dir):
    cached = RunStore(runs_dir).get("lenet")
    alone, _ = panels.run_panels(cached, 0, None, "auto", 1)
    itself, _ = panels.run_panels(cached, 0, cached, "auto", 1)
    assert [len(f.data) for f in itself] == [len(f.data) for f in alone]
    assert len(panels.step_panels(cached, 1, 0, cached)[1].data) == 1


def test_a_port_in_use_is_one_line(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["dashboard", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is in use" in err and len(err.strip().splitlines()) == 1


def test_a_run_still_being_written_shows_new_records(tmp_path):
    """Live mode: the store sees each epoch's records while the trainer is still running."""
    from labkit.data import MNIST, load_mnist
    from labkit.models import lenet
    from labkit.optim import Adam
    from labkit.recorder import Recorder, RecordSchedule, choose_probes
    from labkit.train import Callback, Trainer

    sample = load_mnist("sample")
    data = MNIST(sample.x_train[:320], sample.y_train[:320], sample.x_test, sample.y_test, "t")
    probes = choose_probes(data.y_test)
    recorder = Recorder(
        tmp_path / "live", data.x_test[probes], data.y_test[probes], schedule=RecordSchedule(5)
    )
    store, seen, listed = RunStore(tmp_path), [], []

    class Watch(Callback):
        def on_epoch_end(self, trainer, result):
            controls = callbacks.run_controls(store, "live", None)
            seen.append((store.get("live").run.status, controls["max"] + 1))
            (entry,) = store.index.refresh()  # the run list follows a live run too
            listed.append(entry.option["label"])

    network = lenet()
    trainer = Trainer(network, Adam(network), batch_size=32, progress=False)
    trainer.callbacks = [recorder, Watch()]
    trainer.fit(data, 3)
    assert [status for status, _ in seen] == ["running"] * 3
    assert len(listed) == 3 and all(label.startswith("live (running") for label in listed)
    assert "completed" in store.index.refresh()[0].option["label"]
    counts = [count for _, count in seen]
    assert counts[0] > 0 and counts[0] < counts[1] < counts[2]
    final = store.get("live")
    assert final.run.status == "completed"
    assert final.records == RecordSchedule(5).count(30) >= counts[2]
    # The last epoch's row comes after the last record: the cache still shows it.
    epochs = [row for row in final.metrics if row.get("kind") == "epoch"]
    assert [row["epoch"] for row in epochs] == [1, 2, 3]
    # Tables grown record by record equal a fresh read of the finished run.
    fresh = RunStore(tmp_path).get("live")
    for name in ("stats", "hist", "update_ratio"):
        np.testing.assert_array_equal(getattr(final, name), getattr(fresh, name))

    # Overwritten in place with as many records: the cache drops the old run's tables.
    before = final.stats.copy()
    network = lenet(seed=7)
    again = Recorder(
        tmp_path / "live",
        data.x_test[probes],
        data.y_test[probes],
        schedule=RecordSchedule(5),
        overwrite=True,
    )
    Trainer(network, Adam(network), batch_size=32, progress=False, callbacks=[again]).fit(data, 3)
    replaced = store.get("live")
    assert replaced.records == len(before)
    assert not np.array_equal(replaced.stats, before)
    np.testing.assert_array_equal(replaced.stats, RunStore(tmp_path).get("live").stats)
