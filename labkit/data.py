"""MNIST loading: the bundled sample, a Keras ``mnist.npz``, IDX files, the Keras cache, a download.

Every source is read into the same four raw arrays (``uint8`` images ``(N, 28, 28)``, integer
labels ``(N,)``), checked, then scaled into an :class:`MNIST` of float32 ``(N, 1, 28, 28)`` images
in ``[0, 1]`` and int64 labels. Files are read with ``allow_pickle=False`` so a file from someone
else cannot run code, and every problem with a file is raised as one-line :class:`LabkitError`.
TensorFlow is imported only inside :func:`_download_via_keras`, never by ``import labkit.data``.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.resources
import logging
import os
import re
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labkit.errors import LabkitError

__all__ = [
    "KEYS",
    "MNIST",
    "data_name",
    "keras_cache_path",
    "load_mnist",
    "make_sample",
    "one_hot",
    "parse_idx",
    "source_of",
    "write_sample",
]

KEYS = ("x_train", "y_train", "x_test", "y_test")
"""The array names of the Keras ``mnist.npz`` layout, in order."""

IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
"""The file names of the original IDX distribution (each may also end in ``.gz``)."""

SAMPLE_RESOURCE = ("assets", "mnist_sample.npz")

# How MNIST.source describes each kind of source (a run records it: see source_of).
SAMPLE_SOURCE = "sample ({train} train / {test} test, bundled)"
IDX_SOURCE = "{path} (IDX files)"
DOWNLOADED_SOURCE = "downloaded through tensorflow.keras.datasets.mnist"

RawArrays = dict[str, np.ndarray]


@dataclass(frozen=True, eq=False, repr=False)
class MNIST:
    """MNIST ready for a network: float32 ``(N, 1, 28, 28)`` images in [0, 1], int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    def __repr__(self) -> str:
        """Shapes and source only, so printing a dataset never dumps 47 million pixels."""
        return (
            f"MNIST(x_train={self.x_train.shape}, x_test={self.x_test.shape}, "
            f"source={self.source!r})"
        )


# --------------------------------------------------------------------------- pure functions


def one_hot(labels: np.ndarray, classes: int = NUM_CLASSES) -> np.ndarray:
    """Encode integer labels ``(N,)`` as float32 rows ``(N, classes)``, the target of the losses."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"one_hot expects a 1-D integer array, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"one_hot labels must lie in 0..{classes - 1}")
    encoded = np.zeros((labels.shape[0], classes), dtype=np.float32)
    encoded[np.arange(labels.shape[0]), labels] = 1.0
    return encoded


def parse_idx(data: bytes, ndim: int, where: str = "<bytes>") -> np.ndarray:
    """Decode an unsigned-byte IDX file (``ndim`` 3 for images, 1 for labels) into a uint8 array.

    The header is big-endian: the magic ``0x00000800 | ndim`` (``0x08`` = unsigned byte), then
    ``ndim`` uint32 sizes; the data must hold exactly ``prod(sizes)`` bytes.
    """
    kind = "images" if ndim == 3 else "labels" if ndim == 1 else f"{ndim}-D"
    expected_magic = 0x800 | ndim
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise LabkitError(
            f"{where}: truncated IDX file: {len(data)} bytes, shorter than the "
            f"{header_size}-byte header of an IDX {kind} file"
        )
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise LabkitError(
            f"{where}: bad IDX magic 0x{magic:08x}; expected 0x{expected_magic:08x} ({kind})"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64))
    found = len(data) - header_size
    if found != expected:
        problem = "truncated IDX file" if found < expected else "IDX file has trailing bytes"
        raise LabkitError(
            f"{where}: {problem}: header says {'x'.join(map(str, dims))} = {expected} bytes "
            f"of data, found {found}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims).copy()


def check_arrays(arrays: RawArrays, where: str) -> None:
    """Raise LabkitError unless the arrays have the Keras layout: uint8 (N,28,28), labels 0..9."""
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE or x.dtype != np.uint8 or x.shape[0] == 0:
            raise LabkitError(
                f"{where}: x_{split} is {x.dtype} with shape {x.shape}; "
                f"expected uint8 with shape (N, 28, 28), N >= 1"
            )
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise LabkitError(
                f"{where}: y_{split} is {y.dtype} with shape {y.shape}; "
                f"expected integer labels with shape (N,)"
            )
        if y.shape[0] != x.shape[0]:
            raise LabkitError(
                f"{where}: y_{split} holds {y.shape[0]} labels but x_{split} holds "
                f"{x.shape[0]} images"
            )
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= NUM_CLASSES:
            raise LabkitError(
                f"{where}: y_{split} holds labels outside 0..{NUM_CLASSES - 1} "
                f"(min {low}, max {high})"
            )


def to_mnist(arrays: RawArrays, source: str) -> MNIST:
    """Scale checked raw arrays into an MNIST: images / 255 as float32 (N,1,28,28), int64 labels."""

    def images(x: np.ndarray) -> np.ndarray:
        return (x.astype(np.float32) / np.float32(255.0))[:, None, :, :]

    return MNIST(
        x_train=images(arrays["x_train"]),
        y_train=arrays["y_train"].astype(np.int64),
        x_test=images(arrays["x_test"]),
        y_test=arrays["y_test"].astype(np.int64),
        source=source,
    )


def make_sample(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    per_class_train: int = 200,
    per_class_test: int = 50,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Draw a stratified random subset (``per_class_*`` images of each digit) for a small sample.

    Images and labels are kept raw (Keras layout, labels as uint8). ``train_index`` and
    ``test_index`` are the int64 positions of the drawn rows in the source arrays, **sorted
    ascending** (so the sample keeps the source order); the same ``seed`` gives the same draw.
    """
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    check_arrays(arrays, "make_sample")
    rng = np.random.default_rng(seed)
    train_index = _stratified_index(arrays["y_train"], per_class_train, rng, "train")
    test_index = _stratified_index(arrays["y_test"], per_class_test, rng, "test")
    return {
        "x_train": arrays["x_train"][train_index],
        "y_train": arrays["y_train"][train_index].astype(np.uint8),
        "x_test": arrays["x_test"][test_index],
        "y_test": arrays["y_test"][test_index].astype(np.uint8),
        "train_index": train_index,
        "test_index": test_index,
    }


def _stratified_index(
    labels: np.ndarray, per_class: int, rng: np.random.Generator, split: str
) -> np.ndarray:
    """Pick ``per_class`` distinct positions of every class 0..9 at random; return them sorted."""
    if per_class < 1:
        raise LabkitError(f"make_sample: per_class_{split} must be >= 1, got {per_class}")
    picks = []
    for digit in range(NUM_CLASSES):
        (where,) = np.nonzero(labels == digit)
        if where.size < per_class:
            raise LabkitError(
                f"make_sample: y_{split} has only {where.size} images of digit {digit}, "
                f"fewer than per_class_{split}={per_class}"
            )
        picks.append(rng.choice(where, size=per_class, replace=False))
    return np.sort(np.concatenate(picks)).astype(np.int64)


# --------------------------------------------------------------------------- I/O at the edges


def load_mnist(source: str | os.PathLike[str] = "auto") -> MNIST:
    """Load MNIST from ``"sample"``, ``"auto"``, a Keras-layout ``.npz`` or an IDX directory.

    ``"auto"`` tries, in order, the ``LABKIT_DATA`` environment variable, the Keras cache
    (``$KERAS_HOME/datasets/mnist.npz``, default ``~/.keras/datasets/mnist.npz``) and a download
    through ``tensorflow.keras``. Any problem raises a one-line LabkitError naming the path.
    (To read a file literally named ``sample`` or ``auto``, pass ``./sample``.)
    """
    arrays, description = _load_raw(source)
    return to_mnist(arrays, description)


def source_of(description: str) -> str:
    """What to pass :func:`load_mnist` to read again the data an :attr:`MNIST.source`
    describes (a run records it): ``"sample"``, the Keras cache for a download, or the
    path of the ``.npz`` or IDX folder."""
    sample = SAMPLE_SOURCE.partition("{")[0]
    if description.startswith(sample) and description.endswith(", bundled)"):
        return "sample"
    if description == DOWNLOADED_SOURCE:
        return str(keras_cache_path())  # where Keras keeps what it downloaded
    return description.removesuffix(IDX_SOURCE.partition("}")[2])


def data_name(description: str) -> str:
    """A short name for the data an :attr:`MNIST.source` describes, fit for a file name:
    ``sample``, or the stem of the ``.npz`` file or the IDX folder's name (``mnist``)."""
    source = source_of(description)
    name = "sample" if source == "sample" else Path(source).stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "data"


def keras_cache_path() -> Path:
    """Where Keras caches ``mnist.npz``: ``$KERAS_HOME/datasets`` or ``~/.keras/datasets``."""
    keras_home = os.environ.get("KERAS_HOME") or str(Path.home() / ".keras")
    return Path(keras_home).expanduser() / "datasets" / "mnist.npz"


def write_sample(
    source_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    per_class_train: int = 200,
    per_class_test: int = 50,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Read MNIST at ``source_path``, draw :func:`make_sample`, save it to ``out_path``."""
    arrays, _ = _load_raw(source_path)
    sample = make_sample(
        arrays["x_train"],
        arrays["y_train"],
        arrays["x_test"],
        arrays["y_test"],
        per_class_train=per_class_train,
        per_class_test=per_class_test,
        seed=seed,
    )
    out = Path(out_path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("wb") as handle:  # a handle, so numpy does not append ".npz" to the name
            np.savez_compressed(handle, **sample)
    except OSError as exc:
        raise LabkitError(f"{out}: cannot write the sample: {_reason(exc)}") from exc
    return sample


def _load_raw(source: str | os.PathLike[str]) -> tuple[RawArrays, str]:
    """Resolve ``source`` and read its four raw arrays, checked; also return a description."""
    if isinstance(source, str) and source == "sample":
        return _load_sample()
    if isinstance(source, str) and source == "auto":
        return _load_auto()
    path = Path(source).expanduser()
    if path.is_dir():
        arrays = _read_idx_dir(path)
        description = IDX_SOURCE.format(path=os.path.abspath(path))
    elif path.exists():
        arrays = _read_npz(path)
        description = os.path.abspath(path)  # absolute: runs record it, to read it back
    else:
        raise LabkitError(f"{path}: no such file or directory (expected an MNIST .npz or IDX dir)")
    check_arrays(arrays, str(path))
    return arrays, description


def _load_sample() -> tuple[RawArrays, str]:
    """Read the sample bundled with the package (see ``labkit/assets/MNIST_SAMPLE.md``)."""
    resource = importlib.resources.files("labkit").joinpath(*SAMPLE_RESOURCE)
    with importlib.resources.as_file(resource) as path:
        if not path.is_file():
            raise LabkitError(f"{path}: the bundled MNIST sample is missing from the package")
        arrays = _read_npz(path)
        check_arrays(arrays, str(path))
    n_train, n_test = len(arrays["y_train"]), len(arrays["y_test"])
    return arrays, SAMPLE_SOURCE.format(train=n_train, test=n_test)


def _load_auto() -> tuple[RawArrays, str]:
    """Try LABKIT_DATA, then the Keras cache, then a tensorflow.keras download."""
    explicit = os.environ.get("LABKIT_DATA")
    if explicit:
        return _load_raw(explicit)
    cached = keras_cache_path()
    if cached.is_file():
        return _load_raw(cached)
    try:
        (x_train, y_train), (x_test, y_test) = _download_via_keras()
    except Exception as exc:  # ImportError, network errors, anything Keras raises
        reason = (
            "tensorflow is not installed: pip install 'labkit[tensorflow]'"
            if isinstance(exc, ImportError)
            else _reason(exc)
        )
        raise LabkitError(
            f"{cached}: MNIST not found and the download through tensorflow.keras failed "
            f"({reason}); pass --data PATH or set LABKIT_DATA to an mnist.npz or IDX dir"
        ) from exc
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    check_arrays(arrays, "tensorflow.keras.datasets.mnist")
    return arrays, DOWNLOADED_SOURCE


def _download_via_keras() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Download MNIST with Keras (into its cache); the only place labkit.data imports TensorFlow.

    TensorFlow's own log lines (oneDNN, CPU features, absl) are kept off stderr: a failed
    download is then only labkit's one line. ``TF_CPP_MIN_LOG_LEVEL`` is 3 unless set.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _stderr_discarded():  # some lines come before any log level applies
        import tensorflow as tf  # lazy: heavy optional dependency
        from tensorflow.keras.datasets import mnist

    tf.get_logger().setLevel(logging.ERROR)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # absl comes with TensorFlow; never fail a download for its logs
        pass
    return mnist.load_data()


@contextlib.contextmanager
def _stderr_discarded():
    """File descriptor 2 points at the null device for the block (what C++ libraries
    write there as well as Python's ``sys.stderr``)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _read_npz(path: Path) -> RawArrays:
    """Read the four Keras keys from an .npz without unpickling; LabkitError on any problem."""
    if not zipfile.is_zipfile(path):
        raise LabkitError(f"{path}: not an .npz file (not a zip archive, or corrupt)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in KEYS if key not in npz.files]
            if missing:
                raise LabkitError(
                    f"{path}: missing key(s) {', '.join(missing)} "
                    f"(expected {', '.join(KEYS)}; found {', '.join(npz.files) or 'none'})"
                )
            return {key: npz[key] for key in KEYS}
    except LabkitError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise LabkitError(f"{path}: corrupt .npz file ({_reason(exc)})") from exc


def _read_idx_dir(directory: Path) -> RawArrays:
    """Read the four IDX files (plain or ``.gz``) of the original MNIST distribution."""
    return {
        key: _read_idx_file(directory, name, ndim=3 if key.startswith("x") else 1)
        for key, name in IDX_FILES.items()
    }


def _read_idx_file(directory: Path, name: str, ndim: int) -> np.ndarray:
    """Read ``name`` (or ``name.gz``) from ``directory`` and decode it with :func:`parse_idx`."""
    plain, zipped = directory / name, directory / f"{name}.gz"
    path = plain if plain.is_file() else zipped if zipped.is_file() else None
    if path is None:
        raise LabkitError(f"{directory}: missing IDX file {name} (or {name}.gz)")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                data = handle.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise LabkitError(f"{path}: cannot read IDX file ({_reason(exc)})") from exc
    return parse_idx(data, ndim, where=str(path))


def _reason(exc: BaseException) -> str:
    """An exception as a short single line: its type and its message."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
