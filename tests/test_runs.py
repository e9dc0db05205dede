"""The run store: round trip, constant-time record reads, crash safety, live follow, locking."""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import zarr.storage

from labkit.cli import main
from labkit.errors import CorruptRunError, LabkitError
from labkit.layers import Convolutional, ReLU
from labkit.network import layer_key
from labkit.runs import RunWriter, list_runs, open_run
from labkit.runs.chunks import encode_row

RECORD_ARRAYS = {
    "features/00-Convolutional": ((3, 4, 4), "float16"),
    "stats/00-Convolutional": ((2, 7), "float32"),
    "hist/00-Convolutional": ((2, 5), "int32"),
}


def pattern(step: int) -> dict[str, np.ndarray]:
    """Record arrays whose every element depends on the step, so a mix-up shows."""
    return {
        "features/00-Convolutional": (np.arange(48).reshape(3, 4, 4) / 8 + step).astype(np.float16),
        "stats/00-Convolutional": (np.arange(14).reshape(2, 7) * 0.5 - step).astype(np.float32),
        "hist/00-Convolutional": np.arange(10, dtype=np.int32).reshape(2, 5) * step + 1,
    }


STATICS = {
    "probe/images": np.linspace(0, 1, 4 * 36, dtype=np.float32).reshape(4, 1, 6, 6),
    "probe/labels": np.array([3, 1, 4, 1], dtype=np.int64),
}


def make_run(path: Path, steps=(10, 20, 30), capacity: int = 10, **kwargs) -> Path:
    kwargs.setdefault("static_arrays", STATICS)
    with RunWriter.create(path, capacity=capacity, record_arrays=RECORD_ARRAYS, **kwargs) as writer:
        for i, step in enumerate(steps):
            writer.write_record(step, i // 2, pattern(step))
            writer.append_metrics([{"step": step, "epoch": i // 2, "loss": 1 / step}])
    return path


# ------------------------------------------------------------------ round trip


def test_round_trip_of_arrays_metrics_gradchecks_and_manifest(tmp_path):
    path = tmp_path / "run"
    manifest = {
        "config": {"lr": 1e-3, "model": "lenet"},
        "seed": np.int64(7),
        "hist_edges": np.array([-1.0, 0.0, 1.0]),
        "layers": [layer_key(0, Convolutional((1, 6, 6), 3, 2)), layer_key(1, ReLU())],
    }
    writer = RunWriter.create(
        path, capacity=8, record_arrays=RECORD_ARRAYS, static_arrays=STATICS, manifest=manifest
    )
    for i, step in enumerate((5, 15, 40, 41)):
        assert writer.write_record(step, i, pattern(step)) == i
    writer.append_metrics([{"step": 5, "loss": 2.5}, {"step": 15, "loss": float("nan")}])
    writer.append_metrics([{"kind": "epoch", "epoch": 1, "step": 41, "test_accuracy": 0.9}])
    first = writer.add_gradcheck({"passed": True, "n": 1})
    second = writer.add_gradcheck({"passed": False, "n": 2})
    third = writer.add_gradcheck({"passed": True, "n": 3})
    writer.update_manifest(note="halfway")
    with pytest.raises(ValueError, match="cannot change"):
        writer.update_manifest(capacity=100)
    with pytest.raises(ValueError, match="status"):
        writer.update_manifest(status="great")
    assert writer.records_written == 4 and writer.capacity == 8
    writer.close()

    run = open_run(path)
    assert run.status == "completed" and run.capacity == 8 and len(run) == 4
    assert run.manifest["format"] == "labkit-run/2"
    assert run.manifest["config"] == {"lr": 1e-3, "model": "lenet"}
    assert run.manifest["seed"] == 7 and run.manifest["hist_edges"] == [-1.0, 0.0, 1.0]
    assert run.manifest["layers"] == ["00-Convolutional", "01-ReLU"]
    assert run.manifest["note"] == "halfway" and run.manifest["records"] == 4
    assert [r["step"] for r in run.records] == [5, 15, 40, 41]
    assert [r["epoch"] for r in run.records] == [0, 1, 2, 3]
    assert run.steps.dtype == np.int64 and run.steps.tolist() == [5, 15, 40, 41]
    for name, (shape, dtype) in RECORD_ARRAYS.items():
        everything = run.array(name)
        assert everything.dtype == np.dtype(dtype) and everything.shape == (4, *shape)
        for i, step in enumerate(run.steps):
            np.testing.assert_array_equal(run.array(name, i), pattern(step)[name])
            np.testing.assert_array_equal(everything[i], pattern(step)[name])
        np.testing.assert_array_equal(run.array(name, -1), pattern(41)[name])
        np.testing.assert_array_equal(run.array(name, slice(1, 3)), everything[1:3])
        np.testing.assert_array_equal(run.array(name, slice(None, None, -2)), everything[::-2])
        assert run.array(name, slice(4, 9)).shape == (0, *shape)
    for name, value in STATICS.items():
        assert run.static(name).dtype == value.dtype
        np.testing.assert_array_equal(run.static(name), value)
    assert run.arrays("features/") == ["features/00-Convolutional"]
    assert len(run.arrays()) == 3
    assert run.metrics() == [
        {"step": 5, "loss": 2.5},
        {"step": 15, "loss": None},  # strict JSON: NaN is stored as null
        {"kind": "epoch", "epoch": 1, "step": 41, "test_accuracy": 0.9},
    ]
    assert [report["n"] for report in run.gradchecks] == [1, 2, 3]
    assert first.name.startswith("gradcheck-") and len({first, second, third}) == 3
    assert run.record_at(40) == 2 and run.nearest_record(27) == 1 and run.nearest_record(28) == 2
    assert run.nearest_record(-100) == 0 and run.nearest_record(10**9) == 3
    with pytest.raises(LabkitError, match="no record at step 39"):
        run.record_at(39)
    with pytest.raises(LabkitError, match="no record 4"):
        run.array("stats/00-Convolutional", 4)
    with pytest.raises(LabkitError, match="no record array 'nope'"):
        run.array("nope", 0)
    assert run.size_bytes() > 0


def test_every_json_file_is_strict_json(tmp_path):
    path = make_run(tmp_path / "run", manifest={"x": float("inf")})

    def refuse_constant(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    for file in [path / "manifest.json", path / "records.jsonl", path / "metrics.jsonl"]:
        for line in (
            file.read_text().splitlines() if file.suffix == ".jsonl" else [file.read_text()]
        ):
            json.loads(line, parse_constant=refuse_constant)


def test_float16_and_the_dtype_rules_are_kept(tmp_path):
    path = tmp_path / "run"
    with RunWriter.create(
        path, capacity=2, record_arrays={"f": ((3,), "float16"), "i": ((3,), "int32")}
    ) as writer:
        writer.write_record(0, 0, {"f": np.array([0.1, 1e4, -2.0]), "i": np.array([1, 2, 3])})
        with pytest.raises(ValueError, match="cannot store float64 as int32"):
            writer.write_record(1, 0, {"f": np.zeros(3), "i": np.zeros(3)})
        with pytest.raises(ValueError, match="expected shape"):
            writer.write_record(1, 0, {"f": np.zeros(4), "i": np.zeros(3, np.int32)})
        with pytest.raises(ValueError, match="missing \\['i'\\]"):
            writer.write_record(1, 0, {"f": np.zeros(3)})
        with pytest.raises(ValueError, match="steps must increase"):
            writer.write_record(0, 0, {"f": np.zeros(3), "i": np.zeros(3, np.int32)})
        writer.write_record(1, 0, {"f": np.zeros(3), "i": np.zeros(3, np.int32)})
        with pytest.raises(LabkitError, match="full"):
            writer.write_record(2, 0, {"f": np.zeros(3), "i": np.zeros(3, np.int32)})
    run = open_run(path)
    assert run.array("f").dtype == np.float16
    np.testing.assert_array_equal(run.array("f", 0), np.array([0.1, 1e4, -2.0], np.float16))
    np.testing.assert_array_equal(run.array("i", 0), [1, 2, 3])


# --------------------------------------------------------- constant-time record reads


def test_records_share_shard_files_and_one_reads_alone(tmp_path, monkeypatch):
    """64 records a shard file (creating a file per record cost more than writing it)."""
    path = make_run(tmp_path / "run", steps=range(1, 71), capacity=100)
    array_dir = path / "data.zarr" / "features" / "00-Convolutional"
    shards = sorted(p.name for p in array_dir.iterdir() if p.name != "zarr.json")
    assert shards == ["c.0.0.0.0", "c.1.0.0.0"]  # records 0-63 and 64-69, none preallocated

    run = open_run(path)
    run.array("features/00-Convolutional", 0)  # opens the array's metadata once
    keys, files = [], []
    original_get, original_open = zarr.storage.LocalStore.get, os.open

    async def counting_get(self, key, *args, **kwargs):
        keys.append(key)
        return await original_get(self, key, *args, **kwargs)

    def counting_open(file, *args, **kwargs):
        if Path(file).is_relative_to(path):
            files.append(Path(file).relative_to(path).as_posix())
        return original_open(file, *args, **kwargs)

    monkeypatch.setattr(zarr.storage.LocalStore, "get", counting_get)
    monkeypatch.setattr(os, "open", counting_open)
    for index, shard in ((17, "c.0.0.0.0"), (65, "c.1.0.0.0")):
        files.clear()
        value = run.array("features/00-Convolutional", index)
        # One file opened, decoded without zarr (the codecs are the writer's own).
        assert (keys, files) == ([], [f"data.zarr/features/00-Convolutional/{shard}"])
        np.testing.assert_array_equal(value, pattern(index + 1)["features/00-Convolutional"])
    monkeypatch.undo()

    (array_dir / "c.1.0.0.0").unlink()  # the other shard is not needed
    np.testing.assert_array_equal(
        open_run(path).array("features/00-Convolutional", 17),
        pattern(18)["features/00-Convolutional"],
    )


def test_record_shards_are_the_bytes_zarr_itself_writes(tmp_path):
    """The writer appends chunks to shards itself (zarr's pipeline is slow and rewrites a
    whole shard for each chunk): the same file as zarr writes, and zarr reads it."""
    shapes = {"f32": ((3, 5), "float32"), "f16": ((7,), "float16"), "i32": ((2, 2, 2), "int32")}
    rng = np.random.default_rng(0)
    values = {
        "f32": rng.standard_normal((3, 5)).astype(np.float32),
        "f16": rng.standard_normal(7).astype(np.float16),
        "i32": rng.integers(-9, 9, (2, 2, 2)).astype(np.int32),
    }
    path = tmp_path / "run"
    with RunWriter.create(path, capacity=3, record_arrays=shapes) as writer:
        writer.write_record(5, 0, {k: np.zeros_like(v) for k, v in values.items()})
        writer.write_record(6, 0, values)
    for name, value in values.items():
        ours = zarr.open_array(store=zarr.storage.LocalStore(path / "data.zarr"), path=name)
        twin = zarr.create_array(
            store=zarr.storage.LocalStore(tmp_path / "twin"),
            name=name,
            shape=ours.shape,
            chunks=ours.chunks,
            shards={"shape": ours.shards, "index_location": "start"},
            dtype=ours.dtype,
            chunk_key_encoding={"name": "default", "separator": "."},
            compressors=ours.compressors,
            config={"write_empty_chunks": True},
        )
        twin[:2] = np.stack([np.zeros_like(value), value])
        key = ".".join(["c", "0"] + ["0"] * value.ndim)
        written = (path / "data.zarr" / name / key).read_bytes()
        assert written == (tmp_path / "twin" / name / key).read_bytes(), name
        np.testing.assert_array_equal(ours[1], value)
        np.testing.assert_array_equal(ours[0], np.zeros_like(value))


def as_format_1(path: Path) -> None:
    """Rewrite a run's record arrays as ``labkit-run/1`` wrote them: no shards, one
    chunk file a record (the bytes of :func:`encode_row`, as that writer wrote them)."""
    manifest = json.loads((path / "manifest.json").read_text())
    store = zarr.storage.LocalStore(path / "data.zarr")
    for name, spec in manifest["record_arrays"].items():
        rows = zarr.open_array(store=store, path=name)[...]
        shutil.rmtree(path / "data.zarr" / name)
        zarr.create_array(
            store=store,
            name=name,
            shape=rows.shape,
            chunks=(1, *spec["shape"]),
            dtype=rows.dtype,
            chunk_key_encoding={"name": "default", "separator": "."},
            compressors=zarr.codecs.ZstdCodec(level=1),
        )
        for index in range(manifest["records"]):
            key = ".".join(["c", str(index)] + ["0"] * len(spec["shape"]))
            (path / "data.zarr" / name / key).write_bytes(encode_row(rows[index]))
    (path / "manifest.json").write_text(json.dumps({**manifest, "format": "labkit-run/1"}))


def test_a_run_of_the_first_format_reads_as_it_did(tmp_path):
    steps = range(1, 71)
    old = make_run(tmp_path / "old", steps=steps, capacity=100, static_arrays={})
    as_format_1(old)
    assert (old / "data.zarr" / "features" / "00-Convolutional" / "c.69.0.0.0").is_file()
    run = open_run(old)
    assert run.manifest["format"] == "labkit-run/1" and list(run.steps) == list(steps)
    for index, step in enumerate(steps):
        for name, value in pattern(step).items():
            np.testing.assert_array_equal(run.array(name, index), value, name)
    for name in RECORD_ARRAYS:
        expected = np.stack([pattern(step)[name] for step in steps])
        np.testing.assert_array_equal(run.array(name), expected)
    (old / "data.zarr" / "features" / "00-Convolutional" / "c.5.0.0.0").unlink()
    with pytest.raises(CorruptRunError, match="step 6"):
        open_run(old).array("features/00-Convolutional", 5)


# ------------------------------------------------------------------- crash safety

WRITER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from labkit.runs import RunWriter

    def pattern(step):
        base = np.arange(8 * 64 * 64, dtype=np.float32).reshape(8, 64, 64)
        return {
            "a": base + step,
            "b": np.full((200,), step, dtype=np.int32),
            "c": (base[:4] % 1000 + step).astype(np.float16),
        }

    shapes = {"a": ((8, 64, 64), "float32"), "b": ((200,), "int32"), "c": ((4, 64, 64), "float16")}
    path, count, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    writer = RunWriter.create(path, capacity=100_000, record_arrays=shapes)
    print("ready", flush=True)
    for i in range(count):
        step = 3 * (i + 1)
        writer.write_record(step, i // 10, pattern(step))
        writer.append_metrics([{"step": step, "loss": 1.0 / step}])
        print(step, flush=True)
        time.sleep(pause)
    writer.close()
    """
)


def crash_pattern(step: int) -> dict[str, np.ndarray]:
    base = np.arange(8 * 64 * 64, dtype=np.float32).reshape(8, 64, 64)
    return {
        "a": base + step,
        "b": np.full((200,), step, dtype=np.int32),
        "c": (base[:4] % 1000 + step).astype(np.float16),
    }


def start_writer(path: Path, count: int = 10**6, pause: float = 0.0) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER_SCRIPT, str(path), str(count), str(pause)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline() == "ready\n", process.stderr.read()
    return process


def kill(process: subprocess.Popen) -> list[int]:
    """SIGKILL the writer; returns the steps it reported committed.

    The rest of stdout is read through the same buffered file that ``readline()`` used:
    ``communicate()`` reads the raw pipe and would miss lines already in that buffer.
    """
    process.send_signal(signal.SIGKILL)
    out = process.stdout.read()  # until EOF: the killed writer's end of the pipe closes
    process.stderr.read()
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    return [int(line) for line in out.split()]


def check_committed_prefix(path: Path, reported: list[int]) -> None:
    run = open_run(path)
    n = len(run)
    assert len(reported) <= n <= len(reported) + 1  # at most one committed but not printed
    assert run.steps.tolist() == [3 * (i + 1) for i in range(n)]
    assert run.status == "crashed"
    for name in ("a", "b", "c"):
        assert run.array(name).shape[0] == n  # uncommitted rows are invisible
    for i, step in enumerate(run.steps):
        for name, expected in crash_pattern(int(step)).items():
            np.testing.assert_array_equal(run.array(name, i), expected)
    assert len(run.metrics()) in {max(n - 1, 0), n}  # a row is appended after its record
    # The dead writer's lock is free: the run can be replaced.
    RunWriter.create(path, capacity=1, record_arrays={"x": ((1,), "int8")}, overwrite=True).close()


@pytest.mark.parametrize("after", [1, 6])
def test_kill_after_committed_records_leaves_exactly_them(tmp_path, after):
    path = tmp_path / "run"
    process = start_writer(path)
    reported = []
    while len(reported) < after:
        reported.append(int(process.stdout.readline()))
    reported += kill(process)
    check_committed_prefix(path, reported)


def test_kill_at_random_moments_never_shows_a_partial_record(tmp_path):
    rng = random.Random(1234)
    for attempt in range(5):
        path = tmp_path / f"run{attempt}"
        process = start_writer(path)
        time.sleep(rng.uniform(0.0, 0.06))  # lands anywhere in a record's writes or commit
        check_committed_prefix(path, kill(process))


def test_a_torn_commit_line_is_ignored(tmp_path):
    path = make_run(tmp_path / "run")
    with open(path / "records.jsonl", "a") as log:
        log.write('{"record": 3, "step": 40, "ep')  # the writer died mid-line
    with open(path / "metrics.jsonl", "a") as log:
        log.write('{"step": 40, "lo')
    run = open_run(path)
    assert run.steps.tolist() == [10, 20, 30]
    assert len(run.metrics()) == 3
    # Even a whole JSON object is not a commit until its newline is written.
    with open(path / "records.jsonl", "w") as log:
        log.write(
            "".join(json.dumps(r) + "\n" for r in run.records[:2]) + json.dumps(run.records[2])
        )
    assert open_run(path).steps.tolist() == [10, 20]


def test_a_corrupt_commit_line_hides_everything_after_it(tmp_path):
    path = make_run(tmp_path / "run", steps=(10, 20, 30, 40))
    lines = (path / "records.jsonl").read_text().splitlines()
    lines[2] = "not json"
    (path / "records.jsonl").write_text("\n".join(lines) + "\n")
    assert open_run(path).steps.tolist() == [10, 20]
    lines[2] = json.dumps({"record": 7, "step": 30, "epoch": 1, "time": 0})
    (path / "records.jsonl").write_text("\n".join(lines) + "\n")
    assert open_run(path).steps.tolist() == [10, 20]


# --------------------------------------------------------------- following a live run


def test_a_reader_follows_a_live_writer(tmp_path):
    path = tmp_path / "run"
    process = start_writer(path, count=12, pause=0.08)
    run = open_run(path)
    counts = []
    statuses = set()
    refused = None
    while process.poll() is None:
        counts.append(run.refresh())
        statuses.add(run.status)
        if refused is None:
            with pytest.raises(LabkitError) as refused:
                RunWriter.create(path, capacity=1, record_arrays={}, overwrite=True)
        time.sleep(0.02)
    process.communicate(timeout=30)
    assert process.returncode == 0
    assert counts == sorted(counts) and len(set(counts)) >= 4
    assert statuses <= {"running", "completed"} and "running" in statuses
    assert f"is being written by another process (pid {process.pid})" in str(refused.value)
    assert run.refresh() == 12 and run.status == "completed"
    np.testing.assert_array_equal(run.array("b", 11), crash_pattern(36)["b"])
    assert len(run.metrics()) == 12


# ------------------------------------------------------------- locking and overwrite


def test_a_live_run_is_never_written_twice_and_overwrite_needs_consent(tmp_path):
    path = tmp_path / "run"
    writer = RunWriter.create(path, capacity=4, record_arrays=RECORD_ARRAYS)
    writer.write_record(10, 0, pattern(10))
    message = f"{path} is being written by another process (pid {os.getpid()})"
    for overwrite in (False, True):
        with pytest.raises(LabkitError) as refused:
            RunWriter.create(path, capacity=4, record_arrays=RECORD_ARRAYS, overwrite=overwrite)
        assert str(refused.value) == message
    reader = open_run(path)
    assert reader.status == "running" and len(reader) == 1
    writer.close()

    with pytest.raises(LabkitError, match="a run already exists") as refused:
        RunWriter.create(path, capacity=4, record_arrays=RECORD_ARRAYS)
    assert str(path) in str(refused.value)
    with pytest.raises(TypeError):  # a manifest that is not JSON fails before any change
        RunWriter.create(
            path, capacity=1, record_arrays={}, manifest={"x": object()}, overwrite=True
        )
    assert open_run(path).steps.tolist() == [10]  # untouched
    np.testing.assert_array_equal(
        open_run(path).array("hist/00-Convolutional", 0), pattern(10)["hist/00-Convolutional"]
    )

    with RunWriter.create(
        path, capacity=2, record_arrays={"other": ((2,), "int8")}, overwrite=True
    ) as new:
        new.write_record(1, 0, {"other": np.array([1, 2])})
    run = open_run(path)
    assert run.steps.tolist() == [1] and run.arrays() == ["other"] and run.metrics() == []
    assert not (path / "data.zarr" / "features").exists()
    assert reader.refresh() == 1 and reader.arrays() == ["other"]  # a reader sees the new run


def test_a_folder_that_is_not_a_run_is_never_overwritten(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(LabkitError, match="not empty and holds no labkit run"):
            RunWriter.create(folder, capacity=1, record_arrays={}, overwrite=overwrite)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(LabkitError, match="not a directory"):
        RunWriter.create(a_file, capacity=1, record_arrays={}, overwrite=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    RunWriter.create(empty, capacity=1, record_arrays={}).close()
    assert open_run(empty).status == "completed"


@pytest.mark.parametrize(
    ("exception", "status"), [(RuntimeError, "failed"), (KeyboardInterrupt, "interrupted")]
)
def test_the_context_manager_records_how_the_run_ended(tmp_path, exception, status):
    path = tmp_path / "run"
    with pytest.raises(exception):
        with RunWriter.create(path, capacity=2, record_arrays=RECORD_ARRAYS) as writer:
            writer.write_record(1, 0, pattern(1))
            raise exception()
    run = open_run(path)
    assert run.status == status and run.steps.tolist() == [1]


# ------------------------------------------------------------------ open_run errors


def _missing(path: Path) -> None:
    pass


def _plain_dir(path: Path) -> None:
    path.mkdir()
    (path / "weights.npz").write_bytes(b"")


def _garbage_manifest(path: Path) -> None:
    make_run(path)
    (path / "manifest.json").write_text("{not json")


def _list_manifest(path: Path) -> None:
    make_run(path)
    (path / "manifest.json").write_text("[1, 2]")


def _unknown_format(path: Path) -> None:
    make_run(path)
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "format": "labkit-run/99"}))


def _bad_capacity(path: Path) -> None:
    make_run(path)
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "capacity": "many"}))


def _deleted_group(path: Path) -> None:
    make_run(path)
    import shutil

    shutil.rmtree(path / "data.zarr")


def _a_file(path: Path) -> None:
    path.write_text("hello")


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_missing, "no such run folder"),
        (_plain_dir, "not a labkit run"),
        (_garbage_manifest, "not valid JSON"),
        (_list_manifest, "not a labkit run manifest"),
        (_unknown_format, "unknown run format 'labkit-run/99'"),
        (_bad_capacity, "bad capacity"),
        (_deleted_group, "corrupt or missing zarr group"),
        (_a_file, "not a run folder"),
    ],
)
def test_open_run_errors_are_one_line_naming_the_path(tmp_path, make, words):
    path = tmp_path / "run"
    make(path)
    with pytest.raises(LabkitError) as error:
        open_run(path)
    message = str(error.value)
    assert str(path) in message and words in message and "\n" not in message


@pytest.mark.filterwarnings("ignore:Numcodecs codecs are not in the Zarr version 3")
def test_a_deleted_or_tampered_array_is_a_one_line_error(tmp_path):
    path = make_run(tmp_path / "run")
    import shutil

    shutil.rmtree(path / "data.zarr" / "stats")
    run = open_run(path)
    with pytest.raises(LabkitError, match="missing or corrupt array") as error:
        run.array("stats/00-Convolutional", 0)
    assert "\n" not in str(error.value) and str(path) in str(error.value)
    # An array whose metadata asks for a codec outside the safe list is refused, inside
    # its shards too.
    meta_path = path / "data.zarr" / "hist" / "00-Convolutional" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    (sharding,) = meta["codecs"]
    sharding["configuration"]["codecs"].append({"name": "numcodecs.zlib", "configuration": {}})
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(LabkitError, match="codec 'numcodecs.zlib' is not allowed"):
        open_run(path).array("hist/00-Convolutional", 0)


# -------------------------------------------------------------------- listing runs


def make_listing(directory: Path) -> None:
    good = make_run(directory / "a-good")
    with RunWriter.create(good, capacity=1, record_arrays=RECORD_ARRAYS, overwrite=True) as writer:
        writer.append_metrics(
            [
                {"kind": "epoch", "epoch": 1, "step": 5, "test_accuracy": 0.5},
                {"kind": "epoch", "epoch": 2, "step": 9, "test_accuracy": 0.95},
                {"kind": "epoch", "epoch": 3, "step": 12, "test_accuracy": None},
            ]
        )
        writer.write_record(12, 3, pattern(12))
    crashed = make_run(directory / "b-crashed", steps=(1, 2))
    manifest = json.loads((crashed / "manifest.json").read_text())
    (crashed / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    corrupt = make_run(directory / "c-corrupt")
    (corrupt / "manifest.json").write_text("garbage")
    (directory / "not-a-run").mkdir()
    (directory / "stray.txt").write_text("x")


def test_list_runs_reports_good_crashed_and_corrupt_runs(tmp_path):
    make_listing(tmp_path)
    good, crashed, corrupt = list_runs(tmp_path)
    assert (good.path.name, good.status, good.steps, good.last_step) == (
        "a-good",
        "completed",
        1,
        12,
    )
    assert good.best_test_accuracy == 0.95 and good.error is None and good.size_bytes > 0
    assert (crashed.status, crashed.steps, crashed.last_step) == ("crashed", 2, 2)
    assert crashed.best_test_accuracy is None
    assert corrupt.status == "corrupt" and "not valid JSON" in corrupt.error
    assert str(tmp_path / "c-corrupt") in corrupt.error


def test_labkit_runs_list_prints_a_table(tmp_path, capsys):
    make_listing(tmp_path)
    assert main(["runs", "list", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = ["name", "status", "records", "last", "step", "best", "test", "size", "model"]
    assert lines[0].split() == header
    good, crashed, corrupt = lines[1:]
    assert good.split()[:5] == ["a-good", "completed", "1", "12", "95.00%"]
    assert good.split()[-2] == "KB" and good.split()[-1] == "-"  # no "model" in its manifest
    assert crashed.split()[:5] == ["b-crashed", "crashed", "2", "2", "-"]
    assert corrupt.split()[:2] == ["c-corrupt", "corrupt"] and "not valid JSON" in corrupt


def test_labkit_runs_list_on_a_missing_or_empty_folder(tmp_path, capsys, monkeypatch):
    assert main(["runs", "list", str(tmp_path / "nowhere")]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and str(tmp_path / "nowhere") in captured.err
    assert main(["runs", "list", str(tmp_path)]) == 0
    assert "labkit train" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)  # DIR defaults to ./runs
    (tmp_path / "runs").mkdir()
    make_run(tmp_path / "runs" / "first")
    assert main(["runs", "list"]) == 0
    assert "first" in capsys.readouterr().out


# ------------------------------------------------------------------ nothing pickled


def test_nothing_is_ever_unpickled(tmp_path, monkeypatch):
    path = make_run(tmp_path / "runs" / "run")
    evil = pickle.dumps({"boom": 1})
    for planted in [
        path / "weights.pkl",
        path / "data.zarr" / "evil.pkl",
        path / "gradchecks" / "gradcheck-20260101-000000.pkl",
    ]:
        planted.write_bytes(evil)
    np.save(path / "data.zarr" / "features" / "c.0.npy", np.zeros(3))

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled / np.load-ed")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(np, "load", refuse)
    run = open_run(path)
    for name in run.arrays():
        run.array(name)
    for name in STATICS:
        run.static(name)
    run.metrics(), run.gradchecks, run.size_bytes()
    list_runs(path.parent)
    assert main(["runs", "list", str(path.parent)]) == 0


def test_the_store_keeps_its_own_name_and_key(tmp_path):
    with pytest.raises(ValueError, match="the store's own"):
        RunWriter.create(
            tmp_path / "a", capacity=1, record_arrays={"consolidated/x": ((1,), "int8")}
        )
    with pytest.raises(ValueError, match="consolidated"):
        RunWriter.create(
            tmp_path / "b", capacity=1, record_arrays={}, manifest={"consolidated": {"x": 1}}
        )


def test_a_failed_consolidation_still_records_the_final_status(tmp_path, monkeypatch):
    def broken(self):
        raise OSError("disk full")

    monkeypatch.setattr(RunWriter, "_consolidate", broken)
    path = make_run(tmp_path / "run")
    run = open_run(path)
    assert run.status == "completed" and run.manifest["consolidated"] == {}
    name = "stats/00-Convolutional"
    np.testing.assert_array_equal(
        run.array(name), np.stack([pattern(s)[name] for s in (10, 20, 30)])
    )


def test_a_static_array_whose_chunk_is_gone_is_corrupt_never_zeros(tmp_path):

    static = {"z": np.zeros(3, np.float32)}  # all zeros: zarr would skip the chunk by default
    RunWriter.create(
        tmp_path / "r", capacity=1, record_arrays={"x": ((2,), "float32")}, static_arrays=static
    ).close()
    assert open_run(tmp_path / "r").static("z").tolist() == [0.0, 0.0, 0.0]
    chunks = [p for p in (tmp_path / "r" / "data.zarr" / "z").rglob("*") if p.name != "zarr.json"]
    for chunk in (p for p in chunks if p.is_file()):
        chunk.unlink()
    with pytest.raises(CorruptRunError, match="static array 'z' is missing its chunk file"):
        open_run(tmp_path / "r").static("z")
