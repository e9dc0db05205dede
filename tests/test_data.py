"""Tests for labkit.data: the bundled sample, .npz and IDX files, the "auto" order, bad input."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import labkit.data as data
from labkit.data import MNIST, load_mnist, make_sample, one_hot, parse_idx, write_sample
from labkit.errors import LabkitError

REPO = Path(__file__).resolve().parents[1]
FULL_MNIST = REPO.parent / "shared" / "data" / "mnist.npz"


# --------------------------------------------------------------------------- fixtures & helpers


def fake_arrays(per_class_train: int = 3, per_class_test: int = 2, seed: int = 1) -> dict:
    """A tiny MNIST look-alike in the Keras layout: random uint8 images, shuffled labels 0..9."""
    rng = np.random.default_rng(seed)
    y_train = rng.permutation(np.repeat(np.arange(10, dtype=np.uint8), per_class_train))
    y_test = rng.permutation(np.repeat(np.arange(10, dtype=np.uint8), per_class_test))
    return {
        "x_train": rng.integers(0, 256, (y_train.size, 28, 28), dtype=np.uint8),
        "y_train": y_train,
        "x_test": rng.integers(0, 256, (y_test.size, 28, 28), dtype=np.uint8),
        "y_test": y_test,
    }


def save_npz(path: Path, arrays: dict) -> Path:
    """Write arrays to ``path`` exactly (no ".npz" appended) and return it."""
    with path.open("wb") as handle:
        np.savez(handle, **arrays)
    return path


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file: big-endian magic 0x0800|ndim, sizes, then data."""
    header = struct.pack(">I", 0x800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dir(directory: Path, arrays: dict, gz: bool = False) -> Path:
    """Write the four MNIST IDX files (optionally gzipped) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for key, name in data.IDX_FILES.items():
        payload = idx_bytes(arrays[key])
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(payload))
        else:
            (directory / name).write_bytes(payload)
    return directory


def assert_matches(dataset: MNIST, arrays: dict) -> None:
    """The loaded dataset is the raw arrays scaled to float32 [0, 1] with a channel axis."""
    for split in ("train", "test"):
        x, y = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
        raw = arrays[f"x_{split}"]
        assert x.dtype == np.float32 and x.shape == (raw.shape[0], 1, 28, 28)
        np.testing.assert_array_equal(x[:, 0], raw.astype(np.float32) / 255)
        assert y.dtype == np.int64
        np.testing.assert_array_equal(y, arrays[f"y_{split}"])


@pytest.fixture
def arrays() -> dict:
    return fake_arrays()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No LABKIT_DATA, an empty KERAS_HOME and HOME, so "auto" never sees the real machine."""
    monkeypatch.delenv("LABKIT_DATA", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path


# --------------------------------------------------------------------------- the bundled sample


def test_sample_loads_with_shapes_dtypes_and_range() -> None:
    mnist = load_mnist("sample")
    assert mnist.x_train.shape == (2000, 1, 28, 28) and mnist.x_test.shape == (500, 1, 28, 28)
    assert mnist.x_train.dtype == np.float32 and mnist.x_test.dtype == np.float32
    assert mnist.y_train.dtype == np.int64 and mnist.y_test.dtype == np.int64
    for x in (mnist.x_train, mnist.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
    assert mnist.source == "sample (2000 train / 500 test, bundled)"
    assert "(2000, 1, 28, 28)" in repr(mnist)


def test_sample_is_stratified() -> None:
    mnist = load_mnist("sample")
    assert np.bincount(mnist.y_train, minlength=10).tolist() == [200] * 10
    assert np.bincount(mnist.y_test, minlength=10).tolist() == [50] * 10


def test_sample_file_layout_and_size() -> None:
    path = REPO / "labkit" / "assets" / "mnist_sample.npz"
    assert path.stat().st_size <= 1_000_000
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted([*data.KEYS, "train_index", "test_index"])
        assert npz["x_train"].dtype == np.uint8 and npz["x_train"].shape == (2000, 28, 28)
        assert npz["y_test"].dtype == np.uint8 and npz["y_test"].shape == (500,)
        for name, size in (("train_index", 60000), ("test_index", 10000)):
            index = npz[name]
            assert index.dtype == np.int64
            assert np.all(np.diff(index) > 0) and index[0] >= 0 and index[-1] < size


@pytest.mark.skipif(not FULL_MNIST.is_file(), reason="full MNIST not beside the checkout")
def test_sample_is_the_documented_draw_from_full_mnist(tmp_path: Path) -> None:
    redrawn = write_sample(FULL_MNIST, tmp_path / "again.npz", 200, 50, seed=0)
    with np.load(REPO / "labkit" / "assets" / "mnist_sample.npz", allow_pickle=False) as npz:
        for key, value in redrawn.items():
            np.testing.assert_array_equal(npz[key], value, err_msg=key)


# --------------------------------------------------------------------------- npz and IDX


def test_npz_round_trip(tmp_path: Path, arrays: dict) -> None:
    path = save_npz(tmp_path / "mnist.npz", arrays)
    mnist = load_mnist(path)
    assert_matches(mnist, arrays)
    assert mnist.source == str(path)
    assert_matches(load_mnist(str(path)), arrays)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_idx_dir_gives_the_same_arrays_as_npz(tmp_path: Path, arrays: dict, gz: bool) -> None:
    from_npz = load_mnist(save_npz(tmp_path / "mnist.npz", arrays))
    from_idx = load_mnist(write_idx_dir(tmp_path / "idx", arrays, gz=gz))
    for key in data.KEYS:
        np.testing.assert_array_equal(getattr(from_idx, key), getattr(from_npz, key))
    assert "IDX" in from_idx.source


def test_idx_dir_may_mix_plain_and_gzip(tmp_path: Path, arrays: dict) -> None:
    directory = write_idx_dir(tmp_path / "idx", arrays)
    name = data.IDX_FILES["x_test"]
    (directory / f"{name}.gz").write_bytes(gzip.compress((directory / name).read_bytes()))
    (directory / name).unlink()
    assert_matches(load_mnist(directory), arrays)


@settings(max_examples=50, deadline=None)
@given(
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_parse_idx_inverts_the_encoding(shape: list[int], seed: int) -> None:
    array = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    decoded = parse_idx(idx_bytes(array), ndim=len(shape))
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, array)


@settings(max_examples=50, deadline=None)
@given(data_=st.data())
def test_parse_idx_rejects_every_truncation(data_: st.DataObject) -> None:
    payload = idx_bytes(np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4))
    cut = data_.draw(st.integers(0, len(payload) - 1))
    with pytest.raises(LabkitError, match="truncated"):
        parse_idx(payload[:cut], ndim=3, where="cut.idx")


def test_parse_idx_rejects_trailing_bytes_and_wrong_kind() -> None:
    images = idx_bytes(np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(LabkitError, match="trailing bytes"):
        parse_idx(images + b"\0", ndim=3)
    with pytest.raises(LabkitError, match="bad IDX magic 0x00000803; expected 0x00000801"):
        parse_idx(images, ndim=1)


# --------------------------------------------------------------------------- "auto"


def test_auto_prefers_labkit_data(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, arrays: dict
) -> None:
    chosen = save_npz(clean_env / "chosen.npz", arrays)
    cache = clean_env / "keras" / "datasets"
    cache.mkdir(parents=True)
    save_npz(cache / "mnist.npz", fake_arrays(seed=99))
    monkeypatch.setenv("LABKIT_DATA", str(chosen))
    monkeypatch.setattr(data, "_download_via_keras", _no_download)
    mnist = load_mnist()
    assert mnist.source == str(chosen)
    assert_matches(mnist, arrays)


def test_auto_labkit_data_may_be_an_idx_dir(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, arrays: dict
) -> None:
    monkeypatch.setenv("LABKIT_DATA", str(write_idx_dir(clean_env / "idx", arrays, gz=True)))
    assert_matches(load_mnist("auto"), arrays)


def test_auto_bad_labkit_data_is_an_error_not_a_fallback(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = clean_env / "keras" / "datasets"
    cache.mkdir(parents=True)
    save_npz(cache / "mnist.npz", fake_arrays())
    missing = clean_env / "nope.npz"
    monkeypatch.setenv("LABKIT_DATA", str(missing))
    with pytest.raises(LabkitError, match="no such file"):
        load_mnist()


def test_auto_uses_the_keras_cache(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, arrays: dict
) -> None:
    cache = clean_env / "keras" / "datasets"
    cache.mkdir(parents=True)
    cached = save_npz(cache / "mnist.npz", arrays)
    monkeypatch.setattr(data, "_download_via_keras", _no_download)
    mnist = load_mnist()
    assert mnist.source == str(cached)
    assert_matches(mnist, arrays)


def test_keras_cache_defaults_to_home(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KERAS_HOME")
    expected = clean_env / "home" / ".keras" / "datasets" / "mnist.npz"
    assert data.keras_cache_path() == expected


def test_auto_downloads_when_nothing_is_found(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, arrays: dict
) -> None:
    calls = []

    def fake_download():
        calls.append(1)
        return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])

    monkeypatch.setattr(data, "_download_via_keras", fake_download)
    mnist = load_mnist()
    assert calls == [1]
    assert "downloaded" in mnist.source
    assert_matches(mnist, arrays)


def test_auto_download_failure_is_one_clear_error(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_download():
        raise OSError("Temporary failure in name resolution\nwhile fetching mnist.npz")

    monkeypatch.setattr(data, "_download_via_keras", failing_download)
    with pytest.raises(LabkitError) as info:
        load_mnist("auto")
    message = str(info.value)
    assert "\n" not in message
    assert "download" in message and "--data PATH" in message and "LABKIT_DATA" in message
    assert str(data.keras_cache_path()) in message


def test_auto_without_tensorflow_is_one_clear_error(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # makes `import tensorflow` fail
    with pytest.raises(LabkitError, match="tensorflow is not installed.*--data PATH"):
        load_mnist()


def _no_download():
    raise AssertionError("the download must not be attempted")


# --------------------------------------------------------------------------- bad input


def _missing(tmp: Path, arrays: dict) -> Path:
    return tmp / "does-not-exist.npz"


def _text_file(tmp: Path, arrays: dict) -> Path:
    path = tmp / "mnist.npz"
    path.write_text("this is not a zip archive\n")
    return path


def _npy_file(tmp: Path, arrays: dict) -> Path:
    path = tmp / "x.npz"
    with path.open("wb") as handle:
        np.save(handle, arrays["x_train"])
    return path


def _truncated_npz(tmp: Path, arrays: dict) -> Path:
    path = save_npz(tmp / "mnist.npz", arrays)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _corrupt_npz_member(tmp: Path, arrays: dict) -> Path:
    path = tmp / "mnist.npz"
    with path.open("wb") as handle:
        np.savez_compressed(handle, **arrays)
    raw = bytearray(path.read_bytes())
    start = raw.index(b"x_train.npy") + 200  # inside the compressed x_train member
    raw[start : start + 64] = bytes(64)
    path.write_bytes(bytes(raw))
    return path


def _pickled_object_array(tmp: Path, arrays: dict) -> Path:
    bad = dict(arrays, y_train=np.array([{"evil": 1}] * arrays["y_train"].size, dtype=object))
    return save_npz(tmp / "mnist.npz", bad)


def _missing_key(tmp: Path, arrays: dict) -> Path:
    return save_npz(tmp / "mnist.npz", {k: v for k, v in arrays.items() if k != "y_test"})


def _wrong_image_shape(tmp: Path, arrays: dict) -> Path:
    return save_npz(tmp / "mnist.npz", dict(arrays, x_train=arrays["x_train"][:, :, :27]))


def _flat_images(tmp: Path, arrays: dict) -> Path:
    flat = arrays["x_test"].reshape(len(arrays["x_test"]), 784)
    return save_npz(tmp / "mnist.npz", dict(arrays, x_test=flat))


def _float_images(tmp: Path, arrays: dict) -> Path:
    return save_npz(tmp / "mnist.npz", dict(arrays, x_train=arrays["x_train"] / 255.0))


def _label_count_mismatch(tmp: Path, arrays: dict) -> Path:
    return save_npz(tmp / "mnist.npz", dict(arrays, y_train=arrays["y_train"][:-1]))


def _labels_out_of_range(tmp: Path, arrays: dict) -> Path:
    y = arrays["y_test"].astype(np.int64)
    y[0] = 10
    return save_npz(tmp / "mnist.npz", dict(arrays, y_test=y))


def _negative_labels(tmp: Path, arrays: dict) -> Path:
    y = arrays["y_train"].astype(np.int64)
    y[3] = -1
    return save_npz(tmp / "mnist.npz", dict(arrays, y_train=y))


def _float_labels(tmp: Path, arrays: dict) -> Path:
    return save_npz(tmp / "mnist.npz", dict(arrays, y_train=arrays["y_train"].astype(np.float32)))


def _one_hot_labels(tmp: Path, arrays: dict) -> Path:
    hot = one_hot(arrays["y_test"]).astype(np.uint8)
    return save_npz(tmp / "mnist.npz", dict(arrays, y_test=hot))


def _empty_split(tmp: Path, arrays: dict) -> Path:
    empty = {"x_test": arrays["x_test"][:0], "y_test": arrays["y_test"][:0]}
    return save_npz(tmp / "mnist.npz", dict(arrays, **empty))


def _empty_dir(tmp: Path, arrays: dict) -> Path:
    (tmp / "idx").mkdir()
    return tmp / "idx"


def _idx_missing_file(tmp: Path, arrays: dict) -> Path:
    directory = write_idx_dir(tmp / "idx", arrays)
    (directory / data.IDX_FILES["y_test"]).unlink()
    return directory


def _idx_bad_magic(tmp: Path, arrays: dict) -> Path:
    directory = write_idx_dir(tmp / "idx", arrays)
    path = directory / data.IDX_FILES["x_train"]
    path.write_bytes(struct.pack(">I", 0x801) + path.read_bytes()[4:])
    return directory


def _idx_labels_as_images(tmp: Path, arrays: dict) -> Path:
    directory = write_idx_dir(tmp / "idx", arrays)
    images = directory / data.IDX_FILES["x_test"]
    (directory / data.IDX_FILES["y_test"]).write_bytes(images.read_bytes())
    return directory


def _idx_truncated(tmp: Path, arrays: dict) -> Path:
    directory = write_idx_dir(tmp / "idx", arrays)
    path = directory / data.IDX_FILES["x_test"]
    path.write_bytes(path.read_bytes()[:-10])
    return directory


def _idx_truncated_header(tmp: Path, arrays: dict) -> Path:
    directory = write_idx_dir(tmp / "idx", arrays)
    (directory / data.IDX_FILES["y_train"]).write_bytes(struct.pack(">I", 0x801))
    return directory


def _idx_gz_not_gzip(tmp: Path, arrays: dict) -> Path:
    directory = write_idx_dir(tmp / "idx", arrays)
    name = data.IDX_FILES["x_train"]
    (directory / name).unlink()
    (directory / f"{name}.gz").write_bytes(b"not gzip at all")
    return directory


def _idx_gz_truncated(tmp: Path, arrays: dict) -> Path:
    directory = write_idx_dir(tmp / "idx", arrays, gz=True)
    path = directory / f"{data.IDX_FILES['x_test']}.gz"
    path.write_bytes(path.read_bytes()[:-20])
    return directory


def _idx_label_out_of_range(tmp: Path, arrays: dict) -> Path:
    y = arrays["y_train"].copy()
    y[0] = 200
    return write_idx_dir(tmp / "idx", dict(arrays, y_train=y))


BAD_INPUTS: dict[str, tuple[Callable[[Path, dict], Path], str]] = {
    "missing file": (_missing, "no such file"),
    "text file": (_text_file, "not an .npz"),
    "npy not npz": (_npy_file, "not an .npz"),
    "truncated npz": (_truncated_npz, "npz"),
    "corrupt npz member": (_corrupt_npz_member, "corrupt .npz"),
    "pickled object array": (_pickled_object_array, "corrupt .npz"),
    "missing key": (_missing_key, "missing key(s) y_test"),
    "wrong image shape": (_wrong_image_shape, "x_train is uint8 with shape (30, 28, 27)"),
    "flat images": (_flat_images, "x_test is uint8 with shape (20, 784)"),
    "float images": (_float_images, "x_train is float64"),
    "label count mismatch": (_label_count_mismatch, "29 labels but x_train holds 30"),
    "labels out of range": (_labels_out_of_range, "outside 0..9 (min 0, max 10)"),
    "negative labels": (_negative_labels, "outside 0..9 (min -1"),
    "float labels": (_float_labels, "y_train is float32"),
    "one-hot labels": (_one_hot_labels, "y_test is uint8 with shape (20, 10)"),
    "empty split": (_empty_split, "N >= 1"),
    "empty dir": (_empty_dir, "missing IDX file train-images-idx3-ubyte"),
    "IDX missing file": (_idx_missing_file, "missing IDX file t10k-labels-idx1-ubyte"),
    "IDX bad magic": (_idx_bad_magic, "train-images-idx3-ubyte: bad IDX magic 0x00000801"),
    "IDX labels as images": (_idx_labels_as_images, "bad IDX magic 0x00000803"),
    "IDX truncated": (_idx_truncated, "t10k-images-idx3-ubyte: truncated IDX file"),
    "IDX truncated header": (_idx_truncated_header, "truncated IDX file"),
    "IDX .gz not gzip": (_idx_gz_not_gzip, "train-images-idx3-ubyte.gz: cannot read"),
    "IDX .gz truncated": (_idx_gz_truncated, "t10k-images-idx3-ubyte.gz: cannot read"),
    "IDX label out of range": (_idx_label_out_of_range, "outside 0..9"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_is_one_line_naming_the_path(tmp_path: Path, arrays: dict, case: str) -> None:
    build, expected = BAD_INPUTS[case]
    path = build(tmp_path, arrays)
    with pytest.raises(LabkitError) as info:
        load_mnist(path)
    message = str(info.value)
    assert str(path) in message
    assert expected in message
    assert "\n" not in message and "\r" not in message


def test_bad_input_through_labkit_data_names_the_path(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, arrays: dict
) -> None:
    path = _missing_key(clean_env, arrays)
    monkeypatch.setenv("LABKIT_DATA", str(path))
    with pytest.raises(LabkitError, match="missing key"):
        load_mnist()


# --------------------------------------------------------------------------- import isolation


def test_importing_labkit_data_does_not_import_tensorflow() -> None:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    code = "import labkit.data, sys; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- make_sample & co.


def test_make_sample_is_stratified_and_indexes_the_source() -> None:
    source = fake_arrays(per_class_train=7, per_class_test=5)
    sample = make_sample(*(source[k] for k in data.KEYS), per_class_train=4, per_class_test=3)
    assert list(sample) == [*data.KEYS, "train_index", "test_index"]
    assert np.bincount(sample["y_train"], minlength=10).tolist() == [4] * 10
    assert np.bincount(sample["y_test"], minlength=10).tolist() == [3] * 10
    for split in ("train", "test"):
        index = sample[f"{split}_index"]
        assert index.dtype == np.int64 and np.all(np.diff(index) > 0)  # sorted, distinct
        np.testing.assert_array_equal(sample[f"x_{split}"], source[f"x_{split}"][index])
        np.testing.assert_array_equal(sample[f"y_{split}"], source[f"y_{split}"][index])
        assert sample[f"x_{split}"].dtype == np.uint8 and sample[f"y_{split}"].dtype == np.uint8


def test_make_sample_is_deterministic_for_a_seed() -> None:
    source = [fake_arrays(per_class_train=20, per_class_test=20)[k] for k in data.KEYS]
    first = make_sample(*source, per_class_train=5, per_class_test=5, seed=3)
    again = make_sample(*source, per_class_train=5, per_class_test=5, seed=3)
    other = make_sample(*source, per_class_train=5, per_class_test=5, seed=4)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["train_index"], other["train_index"])


def test_make_sample_refuses_to_draw_more_than_a_class_holds() -> None:
    source = [fake_arrays(per_class_train=3, per_class_test=2)[k] for k in data.KEYS]
    with pytest.raises(LabkitError, match="only 3 images of digit 0"):
        make_sample(*source, per_class_train=4, per_class_test=1)


def test_write_sample_round_trips(tmp_path: Path) -> None:
    source = save_npz(tmp_path / "full.npz", fake_arrays(per_class_train=6, per_class_test=4))
    out = tmp_path / "nested" / "sample.bin"  # no ".npz" suffix is added
    sample = write_sample(source, out, per_class_train=2, per_class_test=1, seed=0)
    with np.load(out, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(sample)
        for key, value in sample.items():
            np.testing.assert_array_equal(npz[key], value)
    assert_matches(load_mnist(out), sample)


def test_write_sample_reads_idx_dirs(tmp_path: Path, arrays: dict) -> None:
    directory = write_idx_dir(tmp_path / "idx", arrays, gz=True)
    from_idx = write_sample(directory, tmp_path / "a.npz", per_class_train=1, per_class_test=1)
    from_npz = write_sample(
        save_npz(tmp_path / "full.npz", arrays), tmp_path / "b.npz", 1, 1, seed=0
    )
    for key in from_idx:
        np.testing.assert_array_equal(from_idx[key], from_npz[key])


def test_one_hot() -> None:
    encoded = one_hot(np.array([3, 0, 9]))
    assert encoded.dtype == np.float32 and encoded.shape == (3, 10)
    np.testing.assert_array_equal(encoded.argmax(axis=1), [3, 0, 9])
    np.testing.assert_array_equal(encoded.sum(axis=1), [1, 1, 1])
    assert one_hot(np.array([1]), classes=2).tolist() == [[0.0, 1.0]]
    with pytest.raises(ValueError):
        one_hot(np.array([10]))
    with pytest.raises(ValueError):
        one_hot(np.array([0.5]))
