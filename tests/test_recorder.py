"""The recorder: schedule, statistics, and a recorded run that matches direct computation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from labkit import parallel, record_process
from labkit.cli import main
from labkit.data import MNIST, load_mnist
from labkit.errors import LabkitError
from labkit.layers import Dense, Flatten, softmax
from labkit.models import lenet
from labkit.network import Network, layer_key
from labkit.optim import SGD, Adam
from labkit.record_values import HIST_SAMPLES, histogram, tensor_stats
from labkit.recorder import Recorder, RecordSchedule, choose_probes
from labkit.recording import HIST_EDGES, STATS_FIELDS, Recording
from labkit.runs import open_run
from labkit.train import Callback, Trainer


def test_schedule_is_dense_at_the_start_then_every_n_and_always_the_last_step():
    schedule = RecordSchedule(every=50, dense_until=100)
    steps = [s for s in range(1, 333) if schedule.records(s, 332)]
    assert steps[:10] == list(range(1, 11))
    assert steps[10:28] == list(range(15, 101, 5))
    assert steps[28:] == [150, 200, 250, 300, 332]
    assert schedule.count(332) == len(steps)


def test_stats_equal_numpy_on_the_same_values():
    values = np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float32)
    values[values < -1] = 0
    stats = dict(zip(STATS_FIELDS, tensor_stats(values, (0.04, 0.96)), strict=True))
    flat = values.astype(np.float64).ravel()
    assert stats["mean"] == pytest.approx(flat.mean(), rel=1e-6)
    assert stats["std"] == pytest.approx(flat.std(), rel=1e-6)
    assert stats["min"] == flat.min() and stats["max"] == flat.max()
    assert stats["l2"] == pytest.approx(np.linalg.norm(flat), rel=1e-6)
    assert stats["zero_fraction"] == pytest.approx(np.mean(flat == 0))
    assert stats["saturated_fraction"] == pytest.approx(np.mean((flat <= 0.04) | (flat >= 0.96)))
    assert np.isnan(tensor_stats(values, None)[-1])


def test_histogram_counts_a_strided_sample_and_clips_outliers():
    values = np.concatenate([np.full(10, 1e9), np.full(10, -1e9), np.zeros(30)])
    counts = histogram(values)
    assert counts.sum() == 50 and counts[-1] == 10 and counts[0] == 10
    assert counts[len(HIST_EDGES) // 2 - 1] == 30  # the bin around zero
    big = np.ones(10 * HIST_SAMPLES)
    assert histogram(big).sum() == HIST_SAMPLES


def test_histogram_puts_every_value_in_the_bin_the_edges_say():
    """Against the rule value by value: edges[i] <= v < edges[i+1], the last bin closed,
    values outside the edges (and NaN) clipped into the end bins; exact edges included."""
    rng = np.random.default_rng(4)
    values = np.concatenate(
        [
            np.sign(rng.standard_normal(3000)) * 10.0 ** rng.uniform(-8, 3, 3000),
            HIST_EDGES,
            np.nextafter(HIST_EDGES, -np.inf),
            [0.0, -0.0, np.inf, -np.inf, np.nan],
        ]
    ).astype(np.float32)
    expected = np.zeros(len(HIST_EDGES) - 1, dtype=np.int64)
    for value in values.astype(np.float64):
        inside = np.flatnonzero((HIST_EDGES[:-1] <= value) & (value < HIST_EDGES[1:]))
        if len(inside):
            expected[inside[0]] += 1
        elif value < HIST_EDGES[0]:
            expected[0] += 1
        else:  # at or above the last edge, or NaN
            expected[-1] += 1
    np.testing.assert_array_equal(histogram(values), expected)


def test_probes_cover_every_class_and_are_fixed_by_the_seed():
    labels = np.random.default_rng(1).integers(0, 10, 500)
    probes = choose_probes(labels, seed=3)
    assert len(probes) == 16 and set(labels[probes]) == set(range(10))
    assert np.array_equal(probes, choose_probes(labels, seed=3))
    assert not np.array_equal(probes, choose_probes(labels, seed=4))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Train lenet for 24 steps on part of the sample, recording, and keep raw activations."""
    sample = load_mnist("sample")
    data = MNIST(sample.x_train[:600], sample.y_train[:600], sample.x_test, sample.y_test, "t")
    network = lenet(seed=0)
    probes = choose_probes(data.y_test)
    path = tmp_path_factory.mktemp("runs") / "run"
    recorder = Recorder(
        path, data.x_test[probes], data.y_test[probes], schedule=RecordSchedule(every=8)
    )
    raw: dict[int, dict[str, np.ndarray]] = {}
    trainer = Trainer(network, Adam(network), batch_size=50, seed=0, progress=False)
    trainer.callbacks = [recorder]

    def keep(kind):
        def hook(layer, _, values):
            raw.setdefault(trainer.step + 1, {})[f"{layer.name}/{kind}"] = values.copy()

        return hook

    network.register_hook(forward=keep("activation"), backward=keep("gradient"))
    result = trainer.fit(data, 2)
    return open_run(path), network, raw, result, data.x_test[probes]


def test_recorded_steps_follow_the_schedule(recorded):
    run, *_ = recorded
    assert list(run.steps) == [s for s in range(1, 25) if RecordSchedule(every=8).records(s, 24)]
    assert run.status == "completed"


def test_recorded_statistics_equal_a_direct_computation_on_the_same_batch(recorded):
    run, network, raw, *_ = recorded
    for record, step in enumerate(run.steps):
        for index, layer in enumerate(network.layers):
            stats = run.array("stats", record)[index]
            for row, kind in enumerate(("activation", "gradient")):
                values = raw[int(step)][f"{layer.name}/{kind}"].astype(np.float64)
                assert stats[row][0] == pytest.approx(values.mean(), rel=1e-5, abs=1e-9)
                assert stats[row][1] == pytest.approx(values.std(), rel=1e-5, abs=1e-9)
                assert stats[row][4] == pytest.approx(np.linalg.norm(values), rel=1e-5)
                assert stats[row][5] == pytest.approx(np.mean(values == 0))


def test_last_record_holds_the_final_weights_features_and_probabilities(recorded):
    run, network, _, _, probe_images = recorded
    last = len(run.steps) - 1
    h = probe_images
    for index, layer in enumerate(network.layers):
        key = layer_key(index, layer)
        for name, value in layer.params.items():
            assert np.array_equal(run.array(f"params/{key}/{name}", last), value)
        h = layer.forward(h)
        stored = run.array(f"features/{key}", last)
        assert stored.dtype == np.float16
        np.testing.assert_allclose(stored, h, rtol=2e-3, atol=2e-3)
    probs = run.array("probs", last)
    np.testing.assert_allclose(probs, softmax(h), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    assert np.array_equal(run.static("probe/images"), probe_images)


def test_update_ratio_matches_consecutive_weight_snapshots(recorded):
    run, *_ = recorded
    names = run.manifest["update_ratio_names"]
    for record in range(1, 5):  # steps 2..5 are consecutive records
        ratios = run.array("update_ratio", record)
        for column, name in enumerate(names):
            before = run.array(f"params/{name}", record - 1)
            after = run.array(f"params/{name}", record)
            expected = np.linalg.norm(after - before) / np.linalg.norm(before)
            assert ratios[column] == pytest.approx(expected, rel=1e-4)


def test_metrics_have_every_step_and_each_epoch(recorded):
    run, _, _, result, _ = recorded
    rows = run.metrics()
    steps = [row["step"] for row in rows if "loss" in row and row.get("kind") != "epoch"]
    assert steps == list(range(1, 25))
    epochs = [row for row in rows if row.get("kind") == "epoch"]
    assert [row["test_accuracy"] for row in epochs] == [e.test_accuracy for e in result.epochs]


def test_the_cli_records_by_default_and_not_with_no_record(tmp_path):
    common = ["train", "--model", "tutorial", "--epochs", "1", "--no-progress"]
    assert main([*common, "--record-every", "20", "--out", str(tmp_path / "a")]) == 0
    run = open_run(tmp_path / "a")
    assert run.steps[-1] == 63 and run.manifest["config"]["model"] == "tutorial"
    assert main([*common, "--no-record", "--out", str(tmp_path / "b")]) == 0
    assert not (tmp_path / "b" / "manifest.json").exists()
    assert (tmp_path / "b" / "weights.npz").exists()


def test_a_trainer_killed_mid_run_leaves_a_consistent_run(tmp_path):
    out = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "labkit.cli", "train", "--epochs", "20", "--no-progress"]
        + ["--record-every", "5", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log = Path(out) / "records.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if log.exists() and log.read_text().count("\n") >= 25:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    run = open_run(out)
    assert run.status == "crashed"
    assert len(run.steps) >= 25
    network = lenet()
    for record in range(len(run.steps)):
        for index, layer in enumerate(network.layers):
            key = layer_key(index, layer)
            assert np.all(np.isfinite(run.array("stats", record)[index][:, :5]))
            for name in layer.params:
                assert np.all(np.isfinite(run.array(f"params/{key}/{name}", record)))


def test_the_run_reads_back_by_meaning(recorded):
    raw, network, _, _, probe_images = recorded
    run = Recording(raw)
    step = int(run.steps[-1])
    weights = run.weights(step)
    features = run.feature_maps(step)
    for index, layer in enumerate(network.layers):
        key = layer_key(index, layer)
        assert set(weights[key]) == set(layer.params)
        for name, value in layer.params.items():
            assert np.array_equal(weights[key][name], value)
    for entry in run.layers:
        assert features[entry["key"]].shape == (16, *entry["output_shape"])
    stats = run.layer_stats("00-Convolutional")
    assert stats["activation"]["mean"].shape == (len(run.steps),)
    assert stats["hist_gradient"].shape == (len(run.steps), len(stats["edges"]) - 1)
    assert np.array_equal(run.layer_stats(0)["gradient"]["l2"], stats["gradient"]["l2"])
    assert np.array_equal(run.probe_images, probe_images)
    assert set(run.probe_labels) == set(range(10))
    np.testing.assert_allclose(run.probabilities(step).sum(axis=1), 1, rtol=1e-5)
    names, ratios = run.update_ratios()
    assert ratios.shape == (len(run.steps), len(names))
    with pytest.raises(LabkitError, match="no recorded layer"):
        run.layer_stats("99-Nothing")
    with pytest.raises(LabkitError, match="no record at step"):
        run.weights(step + 1)


def test_one_layer_reads_back_by_index_key_or_name(recorded):
    raw, network, _, _, _ = recorded
    run = Recording(raw)
    step = int(run.steps[-3])
    assert run.steps[-2] - step > 2  # record steps thin out: step + 1 is nearest to step
    assert run.convolutions == [0, 3]  # lenet's two convolutions, found by their kernels
    for layer in (3, "3", "03-Convolutional", network.layers[3].name):
        assert run.layer_index(layer) == 3
        np.testing.assert_array_equal(
            run.kernels(layer, step), run.weights(step)["03-Convolutional"]["kernels"]
        )
        np.testing.assert_array_equal(
            run.feature_map(layer, step), run.feature_maps(step)["03-Convolutional"]
        )
    assert run.nearest_step(step + 1) == step
    np.testing.assert_array_equal(
        run.parameter("07-Dense", "bias", step), run.weights(step)["07-Dense"]["bias"]
    )
    tables = run.tables()
    assert set(tables) == {"stats", "hist", "update_ratio"}
    np.testing.assert_array_equal(run.tables(slice(2, 4))["hist"], tables["hist"][2:4])


def test_the_network_at_a_step_has_that_steps_weights(recorded):
    raw, network, _, _, probe_images = recorded
    run = Recording(raw)
    step = int(run.steps[-1])
    rebuilt = run.network_at(step)
    for index, layer in enumerate(network.layers):
        for name, value in layer.params.items():
            np.testing.assert_array_equal(rebuilt.layers[index].params[name], value)
    stored = run.probabilities(step)
    np.testing.assert_allclose(softmax(rebuilt.forward(probe_images)), stored, atol=1e-5)
    earlier = run.network_at(int(run.steps[0]))
    assert not np.array_equal(
        earlier.layers[0].params["kernels"], network.layers[0].params["kernels"]
    )


def test_weights_of_the_wrong_shape_are_refused_in_one_line():
    network = lenet()
    weights = network.state_dict()
    weights["0.kernels"] = np.zeros((3, 1, 5, 5), dtype=np.float32)
    with pytest.raises(LabkitError, match=r"^here: weight 0.kernels has shape \(3, 1, 5, 5\)"):
        network.set_weights(weights, source="here")
    del weights["0.kernels"]
    with pytest.raises(LabkitError, match="missing 0.kernels"):
        network.set_weights(weights, source="here")


def test_small_tables_are_consolidated_when_the_run_closes(recorded):
    run = recorded[0]
    consolidated = run.manifest["consolidated"]
    assert {"stats", "hist", "update_ratio", "probs"} <= set(consolidated)
    assert "features/00-Convolutional" not in consolidated  # 295 KB a record: read per step
    for name in ("stats", "hist", "update_ratio"):
        whole = run._consolidated(name, len(run.steps))  # the copy itself, not a fallback
        assert whole is not None
        per_record = run.array(name, slice(None))
        np.testing.assert_array_equal(whole, per_record)
        assert consolidated[name] == len(run.steps) == len(whole)


def test_a_training_error_closes_the_run_as_failed(tmp_path):
    """The run is closed by the trainer however training ends, not by each caller."""
    from labkit.train import Callback

    sample = load_mnist("sample")
    data = MNIST(sample.x_train[:320], sample.y_train[:320], sample.x_test, sample.y_test, "t")
    probes = choose_probes(data.y_test)
    recorder = Recorder(tmp_path / "run", data.x_test[probes], data.y_test[probes])

    class Boom(Callback):
        def on_step_end(self, trainer, step, logs):
            if step == 4:
                raise RuntimeError("boom")

    network = lenet()
    trainer = Trainer(network, Adam(network), batch_size=32, progress=False)
    trainer.callbacks = [recorder, Boom()]
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(data, 1)
    run = open_run(tmp_path / "run")
    assert run.status == "failed"
    assert list(run.steps) == [1, 2, 3, 4]
    assert recorder.writer is None and not recorder._worker.is_alive()


def test_a_callback_failing_to_begin_still_closes_the_run_of_one_that_began(tmp_path):
    from labkit.train import Callback

    sample = load_mnist("sample")
    data = MNIST(sample.x_train[:64], sample.y_train[:64], sample.x_test, sample.y_test, "t")
    probes = choose_probes(data.y_test)
    recorder = Recorder(tmp_path / "run", data.x_test[probes], data.y_test[probes])
    ended = []

    class BadStart(Callback):
        def on_train_begin(self, trainer):
            raise RuntimeError("cannot begin")

        def on_train_end(self, trainer, result):
            ended.append(self)  # never: it did not begin

    network = lenet()
    trainer = Trainer(network, Adam(network), progress=False, callbacks=[recorder, BadStart()])
    with pytest.raises(RuntimeError, match="cannot begin"):
        trainer.fit(data, 1)
    assert open_run(tmp_path / "run").status == "failed" and ended == []
    assert recorder.writer is None and not recorder._worker.is_alive()


@pytest.mark.parametrize("threads", [1, 2])
def test_recording_does_not_change_what_is_trained(tmp_path, threads):
    """Hooks only observe, split steps included: the weights are bit-identical."""
    sample = load_mnist("sample")
    data = MNIST(
        sample.x_train[:640], sample.y_train[:640], sample.x_test[:50], sample.y_test[:50], ""
    )

    def train(record: bool) -> dict[str, np.ndarray]:
        network = lenet(seed=0)
        callbacks = []
        if record:
            callbacks.append(
                Recorder(
                    tmp_path / f"run-{threads}",
                    sample.x_test[:16],
                    sample.y_test[:16],
                    schedule=RecordSchedule(every=3, dense_until=0),
                )
            )
        trainer = Trainer(
            network,
            Adam(network),
            batch_size=64,
            progress=False,
            callbacks=callbacks,
            threads=threads,
        )
        assert trainer.parallel.slices(64) == threads
        trainer.fit(data, epochs=1)
        return network.state_dict()

    plain, recorded = train(False), train(True)
    assert len(open_run(tmp_path / f"run-{threads}").steps) > 3
    for key, value in plain.items():
        np.testing.assert_array_equal(recorded[key], value, err_msg=key)


class CountingDense(Dense):
    """A user's dense layer that notes which process and thread ran each forward, and on
    how many rows, in a file: the recorder may compute its records in another process."""

    log: Path

    def forward(self, input):
        with open(CountingDense.log, "a") as log:
            log.write(f"{os.getpid()} {threading.current_thread().name} {len(input)}\n")
        return super().forward(input)


def test_the_probes_pass_through_the_recorders_copy_of_the_network_not_the_trained_one(
    tmp_path,
):
    """The training thread and its layers never run the probes: the record process (or,
    without fork, the writer thread) runs them through a copy given each record's
    weights, so the record still holds the trained network's features at that step."""
    sample = load_mnist("sample")
    data = MNIST(
        sample.x_train[:120], sample.y_train[:120], sample.x_test[:30], sample.y_test[:30], ""
    )
    network = Network([Flatten(), CountingDense(784, 10, rng=0)])
    CountingDense.log = tmp_path / "calls.txt"
    recorder = Recorder(
        tmp_path / "run", sample.x_test[:16], sample.y_test[:16], schedule=RecordSchedule(every=1)
    )
    Trainer(network, SGD(network, 0.1), batch_size=40, progress=False, callbacks=[recorder]).fit(
        data, epochs=1
    )
    calls = [line.split() for line in CountingDense.log.read_text().splitlines()]
    trainer = (str(os.getpid()), threading.current_thread().name)
    probe_calls = {(pid, thread) for pid, thread, rows in calls if rows == "16"}
    assert sum(rows == "16" for *_, rows in calls) == 3 and len(probe_calls) == 1
    if record_process.available():
        assert probe_calls.pop()[0] != trainer[0]
    else:
        assert probe_calls == {(trainer[0], "labkit-recorder")}
    assert {(pid, thread) for pid, thread, rows in calls if rows != "16"} == {trainer}
    run = open_run(tmp_path / "run")
    weights = run.array("params/01-CountingDense/weights", len(run.steps) - 1)
    np.testing.assert_array_equal(weights, network.layers[1].params["weights"])
    expected = sample.x_test[:16].reshape(16, -1) @ weights.T + network.layers[1].params["bias"]
    np.testing.assert_allclose(
        run.array("features/01-CountingDense", len(run.steps) - 1), expected, rtol=2e-3, atol=2e-3
    )


def test_the_writer_borrows_a_core_while_it_computes_a_record(tmp_path, monkeypatch):
    """Split steps leave it (or the record process it waits for) that core meanwhile
    (labkit.parallel.lend_core)."""
    sample = load_mnist("sample")
    data = MNIST(
        sample.x_train[:96], sample.y_train[:96], sample.x_test[:30], sample.y_test[:30], ""
    )
    lent: list[tuple[str, int]] = []
    write = Recorder._write  # computes the record, here or in the record process

    def noting(self, *args):
        lent.append((threading.current_thread().name, parallel.lent_cores()))
        return write(self, *args)

    monkeypatch.setattr(Recorder, "_write", noting)
    recorder = Recorder(
        tmp_path / "run", sample.x_test[:16], sample.y_test[:16], schedule=RecordSchedule(every=1)
    )
    network = lenet()
    Trainer(network, Adam(network), batch_size=32, progress=False, callbacks=[recorder]).fit(
        data, epochs=1
    )
    assert lent == [("labkit-recorder", 1)] * 3
    assert parallel.lent_cores() == 0  # given back


def test_flush_waits_until_every_record_handed_over_is_written(tmp_path):
    sample = load_mnist("sample")
    data = MNIST(
        sample.x_train[:96], sample.y_train[:96], sample.x_test[:20], sample.y_test[:20], ""
    )
    network = lenet(seed=0)
    recorder = Recorder(tmp_path / "run", sample.x_test[:16], sample.y_test[:16])
    seen = []

    class ReadTheLiveRun(Callback):
        def on_step_end(self, trainer, step, logs):
            recorder.flush()
            seen.append(list(open_run(tmp_path / "run").steps))

    callbacks = [recorder, ReadTheLiveRun()]
    Trainer(network, Adam(network), batch_size=32, progress=False, callbacks=callbacks).fit(data, 1)
    assert seen == [[1], [1, 2], [1, 2, 3]]
