"""One bad run never hides the others, and never shows wrong data (issue 14, section 3).

Every corrupt run here is a copy of one small real run (``base``), broken the way a disk,
a user or a half-finished copy breaks one.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
from pathlib import Path

import google_crc32c
import numpy as np
import pytest

from labkit.cli import main
from labkit.data import MNIST, load_mnist
from labkit.errors import CorruptRunError, LabkitError
from labkit.fit import fit
from labkit.models import lenet
from labkit.recording import open_recording
from labkit.runs import list_runs, open_run

KERNELS = "params/00-Convolutional/kernels"
FEATURES = "features/00-Convolutional"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """lenet trained for 6 steps (every step recorded), closed: consolidated copies too."""
    sample = load_mnist("sample")
    data = MNIST(sample.x_train[:192], sample.y_train[:192], sample.x_test, sample.y_test, "t")
    path = tmp_path_factory.mktemp("base") / "run"
    fit(lenet(seed=0), run=path, epochs=1, data=data, progress=False, model="lenet")
    return path


@pytest.fixture
def runs(base, tmp_path) -> Path:
    """A runs folder holding a good run and ``b-bad``, a copy for a test to break."""
    for name in ("a-good", "b-bad"):
        shutil.copytree(base, tmp_path / name)
    return tmp_path


def edit_manifest(path: Path, change) -> None:
    """Rewrite the manifest after ``change(manifest)`` (which edits the dict in place)."""
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def shard_index(path: Path, name: str, record: int) -> tuple[Path, np.ndarray, int]:
    """The shard file holding a record of a record array, its index (offset, length
    pairs) and the record's slot in it."""
    meta = json.loads((path / "data.zarr" / name / "zarr.json").read_text())
    per_shard = meta["chunk_grid"]["configuration"]["chunk_shape"][0]
    shard, slot = divmod(record, per_shard)
    (found,) = (path / "data.zarr" / name).glob(f"c.{shard}.*")
    raw = found.read_bytes()[: 16 * per_shard]
    return found, np.frombuffer(raw, dtype="<u8").reshape(-1, 2).copy(), slot


def rewrite_entry(path: Path, name: str, record: int, offset: int, length: int) -> None:
    """Point a record's entry in its shard's index elsewhere (a valid index, CRC too)."""
    found, entries, slot = shard_index(path, name, record)
    entries[slot] = (offset, length)
    data = entries.tobytes()
    with open(found, "r+b") as shard:
        shard.write(data + google_crc32c.value(data).to_bytes(4, "little"))


def drop_chunk(path: Path, name: str, record: int) -> None:
    """Remove one record's chunk from its shard, as if it had never been written."""
    rewrite_entry(path, name, record, 2**64 - 1, 2**64 - 1)


def listed(runs: Path) -> dict:
    return {summary.path.name: summary for summary in list_runs(runs)}


def assert_one_line(message: str, *words: str) -> None:
    assert "\n" not in message and "Traceback" not in message
    for word in words:
        assert word in message


# ------------------------------------------ 1. an unreadable file hides nothing else


def break_file(path: Path, how: str, monkeypatch) -> Path:
    """Make ``records.jsonl`` (or ``metrics.jsonl``) a directory, a symlink loop or
    unreadable; returns the broken file."""
    name, how = (
        ("metrics.jsonl", how.split()[1]) if how.startswith("metrics") else ("records.jsonl", how)
    )
    target = path / name
    if how == "directory":
        target.unlink()
        target.mkdir()
    elif how == "loop":
        target.unlink()
        target.symlink_to(name)  # a link to itself: ELOOP
    else:  # tests run as root, which reads through chmod 000: inject what a user would get
        real_open = builtins.open

        def refusing_open(file, *args, **kwargs):
            if isinstance(file, str | os.PathLike) and Path(file) == target:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", refusing_open)
    return target


HOW = ["directory", "loop", "unreadable", "metrics directory", "metrics loop"]


@pytest.mark.parametrize("how", HOW)
def test_an_unreadable_log_is_listed_corrupt_with_the_others_shown(runs, how, monkeypatch, capsys):
    broken = break_file(runs / "b-bad", how, monkeypatch)
    summaries = listed(runs)
    assert summaries["a-good"].status == "completed" and summaries["a-good"].steps == 6
    bad = summaries["b-bad"]
    assert bad.status == "corrupt"
    assert_one_line(bad.error, str(broken), "cannot read")
    assert main(["runs", "list", str(runs)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:3] == ["a-good", "completed", "6"]
    assert out[2].split()[:2] == ["b-bad", "corrupt"] and len(out) == 3
    with pytest.raises(CorruptRunError) as error:
        open_recording(runs / "b-bad")
    assert_one_line(str(error.value), str(broken))


@pytest.mark.parametrize("how", ["directory", "loop", "unreadable"])
def test_the_dashboard_keeps_every_other_run(runs, how, monkeypatch):
    from dashboards.app import create_app
    from dashboards.store import RunStore

    break_file(runs / "b-bad", how, monkeypatch)
    summaries = {entry.name: entry for entry in RunStore(runs).index.refresh()}
    assert summaries["a-good"].error is None and summaries["b-bad"].status == "corrupt"
    response = create_app(runs).server.test_client().get("/_dash-layout")
    assert response.status_code == 200
    page = str(response.get_json())
    assert "a-good (completed" in page and "b-bad — corrupt: " in page


# ------------------------------------------ 2. a missing chunk is corruption, not zeros


def test_a_deleted_record_chunk_is_an_error_naming_run_array_and_step(runs, capsys):
    path = runs / "b-bad"
    recording = open_recording(path)
    step = int(recording.steps[3])
    drop_chunk(path, KERNELS, 3)
    with pytest.raises(CorruptRunError) as error:
        recording.kernels(0, step)
    assert_one_line(str(error.value), str(path), KERNELS, f"step {step}", "missing")
    assert recording.kernels(0, int(recording.steps[2])).any()  # the other records read
    for read in (recording.weights, recording.network_at):
        with pytest.raises(CorruptRunError, match=f"step {step}"):
            read(step)
    # The dashboard's check button gets the error, not "all passed" on zeros.
    from dashboards.callbacks import check_at_step
    from dashboards.store import CachedRun

    with pytest.raises(LabkitError, match=KERNELS):
        check_at_step(CachedRun(recording), 3)
    assert recording.gradchecks == []
    assert main(["inspect", str(path), "--step", str(step), "--out", str(runs / "f")]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and KERNELS in captured.err
    assert f"step {step}" in captured.err and "Traceback" not in captured.err


def test_a_deleted_feature_map_chunk_is_an_error(runs):
    path = runs / "b-bad"
    drop_chunk(path, FEATURES, 5)
    recording = open_recording(path)
    step = int(recording.steps[5])
    with pytest.raises(CorruptRunError, match=f"{FEATURES}.*step {step}"):
        recording.feature_map(0, step)
    with pytest.raises(CorruptRunError, match=f"step {step}"):
        recording.run.array(FEATURES)  # every record, through the per-record chunks


def test_a_deleted_whole_run_copy_falls_back_to_the_records(runs, base):
    path = runs / "b-bad"
    for copy in (path / "data.zarr" / "consolidated").rglob("c.*"):
        copy.unlink()
    recording, good = open_recording(path), open_recording(base)
    for name, table in good.tables().items():
        np.testing.assert_array_equal(recording.tables()[name], table)
    np.testing.assert_array_equal(
        recording.layer_stats(0)["activation"]["max"], good.layer_stats(0)["activation"]["max"]
    )
    # With the copy gone, a missing record chunk behind it is found.
    drop_chunk(path, "stats", 4)
    with pytest.raises(CorruptRunError, match=f"stats.*step {int(good.steps[4])}"):
        recording.layer_stats(0)


def test_a_missing_chunk_of_a_run_still_being_read_by_slices(runs):
    path = runs / "b-bad"
    edit_manifest(path, lambda m: m.update(consolidated={}))  # as a live run: no copies yet
    drop_chunk(path, "update_ratio", 2)
    recording = open_recording(path)
    assert recording.tables(slice(0, 2))["update_ratio"].shape[0] == 2
    with pytest.raises(CorruptRunError, match="update_ratio.*step 3"):
        recording.tables(slice(1, 4))
    with pytest.raises(CorruptRunError, match="update_ratio.*step 3"):
        recording.run.array("update_ratio", slice(None, None, -1))


def test_a_truncated_or_garbage_chunk_is_a_one_line_error(runs):
    path = runs / "b-bad"
    recording = open_recording(path)
    found, entries, slot = shard_index(path, KERNELS, 1)
    with open(found, "r+b") as shard:  # record 1's chunk overwritten with garbage
        shard.seek(int(entries[slot][0]))
        shard.write(b"not zstd at all")
    offset, _ = shard_index(path, KERNELS, 2)[1][2]
    rewrite_entry(path, KERNELS, 2, int(offset), 10)  # record 2's cut to 10 bytes
    for record in (1, 2):
        with pytest.raises(CorruptRunError) as error:
            recording.kernels(0, int(recording.steps[record]))
        assert_one_line(str(error.value), str(path), KERNELS)


# ------------------------------------------ 3. wrong types, absurd sizes: one line each


def match_zarr(path: Path) -> None:
    """Make the arrays' zarr metadata agree with a tampered manifest, so that only the
    format's limits stand between the reader and a huge allocation."""
    manifest = json.loads((path / "manifest.json").read_text())
    for name, spec in manifest["record_arrays"].items():
        meta_path = path / "data.zarr" / name / "zarr.json"
        meta = json.loads(meta_path.read_text())
        meta["shape"] = [manifest["capacity"], *spec["shape"]]
        meta["chunk_grid"]["configuration"]["chunk_shape"] = [1, *spec["shape"]]
        meta_path.write_text(json.dumps(meta))


def _shape(table: str, name: str, shape: list):
    return lambda manifest: manifest[table][name].update(shape=shape)


STORE_BREAKS = [  # (change, zarr metadata made to agree, what the error says)
    (lambda m: m.update(capacity=10**18), True, "capacity 1000000000000000000 is over the limit"),
    (lambda m: m.update(capacity=1e18), False, "bad capacity 1e+18"),
    (_shape("record_arrays", KERNELS, [2**20, 2**20, 2**10, 14]), True, "over the limit"),
    (_shape("record_arrays", KERNELS, [1] * 100), True, "100 axes"),
    (_shape("static_arrays", "probe/images", [2**40, 28, 28]), False, "over the limit"),
    (lambda m: m.update(record_arrays="garbage"), False, "'record_arrays' is missing"),
    (lambda m: m.pop("static_arrays"), False, "'static_arrays' is missing"),
    (lambda m: m.update(status=["running"]), False, "bad status"),
    (lambda m: m.update(id=7), False, "bad id"),
    (lambda m: m.update(records="six"), False, "bad records"),
    (lambda m: m.update(consolidated={"stats": "all"}), False, "bad 'consolidated'"),
]


@pytest.mark.parametrize(
    ("change", "agree", "words"), STORE_BREAKS, ids=[b[-1] for b in STORE_BREAKS]
)
def test_a_manifest_of_wrong_types_or_sizes_lists_the_run_corrupt(
    runs, change, agree, words, capsys
):
    path = runs / "b-bad"
    edit_manifest(path, change)
    if agree:
        match_zarr(path)
    summaries = listed(runs)
    assert summaries["a-good"].status == "completed"
    assert summaries["b-bad"].status == "corrupt"
    assert_one_line(summaries["b-bad"].error, str(path / "manifest.json"), words)
    assert main(["runs", "list", str(runs)]) == 0
    assert capsys.readouterr().out.splitlines()[2].split()[:2] == ["b-bad", "corrupt"]
    assert main(["inspect", str(path)]) == 2  # refused before any array is read
    assert capsys.readouterr().err.count("\n") == 1


def _first_layer(**changes):
    return lambda manifest: manifest["layers"][0].update(changes)


def _shorter(key: str):
    return lambda manifest: manifest[key].pop()


RECORDING_BREAKS = [
    (lambda m: m.update(layers="garbage"), "'layers'"),
    (lambda m: m.update(layers=[1, "x"]), "'layers'"),
    (lambda m: m.pop("layers"), "'layers'"),
    (_first_layer(key=None), "layer 0"),
    (_first_layer(key="99-Nothing"), "layer 0"),
    (_first_layer(params="garbage"), "layer 0"),
    (_first_layer(params={"kernels": [3, 3]}), "layer 0"),
    (lambda m: m.pop("hist_edges"), "'hist_edges'"),
    (lambda m: m.pop("stats_fields"), "'stats_fields'"),
    (lambda m: m.update(stats_fields=5), "'stats_fields'"),
    (_shorter("stats_fields"), "'stats_fields'"),
    (_shorter("hist_edges"), "'hist_edges'"),
    (lambda m: m.update(hist_edges=["a"] * 66), "'hist_edges'"),
    (_shorter("update_ratio_names"), "'update_ratio_names'"),
    (_shorter("layers"), "'layers'"),
]


@pytest.mark.parametrize(
    ("change", "words"), RECORDING_BREAKS, ids=[b[-1] for b in RECORDING_BREAKS]
)
def test_a_recording_described_wrongly_is_a_one_line_error(runs, change, words, capsys):
    from dashboards.store import RunStore

    path = runs / "b-bad"
    edit_manifest(path, change)
    with pytest.raises(CorruptRunError) as error:
        open_recording(path)
    assert_one_line(str(error.value), str(path / "manifest.json"), words)
    summaries = {entry.name: entry for entry in RunStore(runs).index.refresh()}
    assert summaries["a-good"].error is None
    assert summaries["b-bad"].status == "corrupt" and summaries["b-bad"].error == str(error.value)
    assert main(["inspect", str(path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_labkit_runs_list_shows_a_wrongly_described_recording_as_corrupt(runs, capsys):
    edit_manifest(runs / "b-bad", lambda m: m.update(layers="garbage"))
    assert main(["runs", "list", str(runs)]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "corrupt" in rows["b-bad"] and "corrupt" not in rows["a-good"]


BAD_ROWS = [
    {"step": "7", "loss": 1.0},
    {"step": 7, "loss": "abc"},
    {"step": 7, "loss": [1.0]},
    {"step": True, "loss": 1.0},
    {"step": 7, "epoch": 1.5, "loss": 1.0},
    {"kind": 3, "step": 7},
    {"kind": "epoch", "step": 7, "test_accuracy": "0.99"},
    {"kind": "epoch", "step": 7, "test_accuracy": {"value": 1}},
]


def test_metrics_rows_of_the_wrong_types_are_skipped(runs, base):
    from dashboards.figures.training import training_curves

    path = runs / "b-bad"
    with open(path / "metrics.jsonl", "a") as log:
        log.write("".join(json.dumps(row) + "\n" for row in BAD_ROWS))
        log.write('{"step": 8, "loss": 0.5}\n')
    rows = open_recording(path).metrics()
    assert rows == [*open_run(base).metrics(), {"step": 8, "loss": 0.5}]
    summaries = listed(runs)
    assert summaries["b-bad"].best_test_accuracy == summaries["a-good"].best_test_accuracy
    training_curves(rows, 8)


def test_gradcheck_reports_of_the_wrong_structure_are_skipped(runs):
    from dashboards.figures.tables import gradcheck_table
    from labkit.reports import TensorCheck
    from labkit.runs import write_gradcheck

    check = TensorCheck("00-Dense", "weights", (3, 2), "full", checked=6).to_dict()
    good = {"subject": "s", "reports": [{"subject": "a", "checks": [check]}]}
    bad = [
        {"reports": "garbage"},
        {"reports": [1]},
        {"reports": [{"checks": "x"}]},
        {"reports": [{"checks": [1]}]},
        {"reports": [{"checks": [{**check, "shape": 3}]}]},
        {"reports": [{"checks": [{**check, "analytic": "x", "failures": 2}]}]},
        {"reports": [{"checks": [{**check, "worst_index": "here"}]}]},
        {"reports": [{"checks": [{**check, "failures": "many"}]}]},
        {"checks": [{**check, "layer": 3}]},
        ["not", "an", "object"],
    ]
    path = runs / "b-bad"
    for report in [*bad, good]:
        write_gradcheck(path, report)
    reports = open_recording(path).gradchecks
    assert reports == [json.loads(json.dumps(good))]
    assert [row["tensor"] for row in gradcheck_table(reports[0])] == ["weights"]


# ------------------------------------------ 4. a run being born is starting


def watch_creation(monkeypatch, runs: Path) -> list[tuple[str, str | None]]:
    """``(status, error)`` of ``runs/new`` at each moment of its creation by a writer
    where it is listed: after it took the lock, before and after it wrote the manifest,
    after it created the zarr group (no arrays yet). Before its manifest it is no run."""
    import zarr

    from labkit.runs import writer

    seen: list[tuple[str, str | None]] = []

    def look(moment: str) -> None:
        seen.extend((s.status, s.error) for s in list_runs(runs) if s.path.name == "new")

    real_lock, real_write, real_group = writer.acquire_lock, writer.atomic_write, zarr.open_group

    def lock(path):
        fd = real_lock(path)
        look("locked")
        return fd

    def write(path, text):
        if path.name == "manifest.json" and len(seen) < 3:
            look("before the manifest")
            real_write(path, text)
            look("after the manifest")
        else:
            real_write(path, text)

    def group(*args, **kwargs):
        opened = real_group(*args, **kwargs)
        if kwargs.get("mode") == "w-":
            look("group made")
        return opened

    monkeypatch.setattr(writer, "acquire_lock", lock)
    monkeypatch.setattr(writer, "atomic_write", write)
    monkeypatch.setattr(zarr, "open_group", group)
    return seen


def test_a_run_being_created_is_starting_never_corrupt(runs, monkeypatch, capsys):
    from labkit.runs import RunWriter

    seen = watch_creation(monkeypatch, runs)
    arrays = {"x": ((3,), "float32")}
    with RunWriter.create(runs / "new", capacity=2, record_arrays=arrays) as run:
        assert seen == [("starting", None)] * 2  # after the manifest, after the group
        assert listed(runs)["new"].status == "running"
        run.write_record(1, 0, {"x": np.ones(3)})
    seen.clear()
    with RunWriter.create(runs / "new", capacity=2, record_arrays=arrays, overwrite=True):
        # The old run stays readable until the new manifest replaces it; then it is new.
        assert [status for status, _ in seen] == ["completed"] + ["starting"] * 3
        assert listed(runs)["new"].status == "running"


def test_a_folder_whose_writer_holds_the_lock_and_nothing_else_is_no_run(runs, capsys):
    from labkit.runs.files import acquire_lock

    (runs / "new").mkdir()
    fd = acquire_lock(runs / "new")  # a training that records nothing holds it too
    try:
        assert sorted(listed(runs)) == ["a-good", "b-bad"]
    finally:
        os.close(fd)


def test_a_forked_child_does_not_hold_its_parents_writer_lock(tmp_path):
    """A split step's worker is a forked child: if it kept the trainer's lock, a
    killed trainer's run would read as still running while the worker lived."""
    from labkit.runs.files import acquire_lock, release_lock, writer_alive

    fd = acquire_lock(tmp_path)
    read, write = os.pipe()
    started_read, started_write = os.pipe()
    child = os.fork()
    if child == 0:  # the child says it runs, waits until the parent has looked, leaves
        os.write(started_write, b"x")
        os.read(read, 1)
        os._exit(0)
    os.close(read)
    os.read(started_read, 1)  # the fork hooks have run in the child
    os.close(started_read)
    os.close(started_write)
    try:
        release_lock(fd)
        assert not writer_alive(tmp_path)  # only the child could hold it now
    finally:
        os.write(write, b"x")
        os.close(write)
        os.waitpid(child, 0)


def test_a_writer_that_died_while_creating_leaves_a_crashed_run(runs):
    path = runs / "b-bad"
    edit_manifest(path, lambda m: m.update(status="running", consolidated={}, records=0))
    shutil.rmtree(path / "data.zarr")
    (path / "records.jsonl").unlink()
    summary = listed(runs)["b-bad"]
    assert (summary.status, summary.steps, summary.error) == ("crashed", 0, None)
    run = open_run(path)
    assert run.status == "crashed" and len(run) == 0
    with pytest.raises(CorruptRunError, match="zarr group"):
        run.array(KERNELS)
