"""Network: the forward/backward chain, summary, save/load (no pickle), predict in batches."""

from __future__ import annotations

import functools
import json
import os
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit.errors import LabkitError
from labkit.layers import (
    Convolutional,
    Dense,
    Flatten,
    MaxPool,
    ReLU,
    Reshape,
    Sigmoid,
    Softmax,
    Tanh,
)
from labkit.models import MODELS, lenet, tutorial
from labkit.network import ARCHITECTURE_KEY, Network, layer_key

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PRESETS = pytest.mark.parametrize("preset", [tutorial, lenet], ids=["tutorial", "lenet"])


def randomize(network: Network, seed: int = 0, scale: float = 0.3) -> Network:
    """Non-zero values in every parameter (the presets start with zero biases)."""
    rng = np.random.default_rng(seed)
    for layer in network.layers:
        for name, value in layer.params.items():
            layer.params[name] = (scale * rng.standard_normal(value.shape)).astype(value.dtype)
    return network


def images(n: int, seed: int = 0, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, 28, 28)).astype(dtype)


def small_network(dtype=np.float64) -> Network:
    rng = np.random.default_rng(5)
    return Network(
        [
            Convolutional((2, 9, 8), 3, 3, dtype=dtype, rng=rng),
            Tanh(),
            MaxPool(2),
            Convolutional((3, 3, 3), 2, 4, bias="tied", dtype=dtype, rng=rng),
            ReLU(),
            Flatten(),
            Dense(16, 6, dtype=dtype, rng=rng),
            Sigmoid(),
            Reshape((6,), (6, 1)),
            Dense(6, 4, dtype=dtype, rng=rng),
            Softmax(),
        ]
    )


# --------------------------------------------------------------------------- forward/backward


def test_forward_and_backward_chain_the_layers():
    rng = np.random.default_rng(1)
    network = randomize(small_network(), seed=1)
    x = rng.standard_normal((3, 2, 9, 8))
    out = network.forward(x)

    manual = x
    for layer in network.layers:
        manual = layer.forward(manual)
    np.testing.assert_array_equal(out, manual)
    assert out.shape == (3, 4, 1)

    g = rng.standard_normal(out.shape)
    dx = network.backward(g)
    grads = [{k: v.copy() for k, v in layer.grads.items()} for layer in network.layers]
    manual = g
    for layer in reversed(network.layers):
        manual = layer.backward(manual)
    np.testing.assert_array_equal(dx, manual)
    assert dx.shape == x.shape
    for layer, saved in zip(network.layers, grads, strict=True):
        assert set(saved) == set(layer.params)
        for name, value in saved.items():
            np.testing.assert_array_equal(layer.grads[name], value)


def test_backward_with_learning_rate_updates_every_layer():
    rng = np.random.default_rng(2)
    network = randomize(small_network(), seed=2)
    x = rng.standard_normal((2, 2, 9, 8))
    g = rng.standard_normal(network.forward(x).shape)
    dx_plain = network.backward(g)
    grads = [{k: v.copy() for k, v in layer.grads.items()} for layer in network.layers]
    before = [{k: v.copy() for k, v in layer.params.items()} for layer in network.layers]

    network.forward(x)
    dx_sgd = network.backward(g, 0.25)
    np.testing.assert_allclose(dx_sgd, dx_plain, rtol=1e-12, atol=1e-15)
    for layer, grad, old in zip(network.layers, grads, before, strict=True):
        for name, param in layer.params.items():
            np.testing.assert_allclose(param, old[name] - 0.25 * grad[name], rtol=1e-12)


def test_layers_get_distinct_names_that_are_their_run_keys():
    network = small_network()
    names = [layer.name for layer in network.layers]
    assert len(set(names)) == len(names)
    for index, layer in enumerate(network.layers):
        assert layer.name == f"{index:02d}-{type(layer).__name__}" == layer_key(index, layer)


def test_a_name_the_user_gave_is_kept():
    dense = Dense(3, 2, rng=0)
    dense.name = "classifier"
    assert Network([ReLU(), dense]).layers[1].name == "classifier"


@PRESETS
def test_backward_without_input_gradient(preset):
    network = randomize(preset(dtype=np.float64), seed=3)
    x = images(2, seed=3, dtype=np.float64)
    g = np.random.default_rng(3).standard_normal(network.forward(x).shape)
    dx = network.backward(g)
    assert dx.shape == x.shape
    full = [{k: v.copy() for k, v in layer.grads.items()} for layer in network.layers]

    assert network.backward(g, input_gradient=False) is None
    for layer, saved in zip(network.layers, full, strict=True):
        assert set(layer.grads) == set(saved)
        for name, value in saved.items():
            np.testing.assert_array_equal(layer.grads[name], value)


@functools.cache
def _small64() -> Network:
    return randomize(small_network(), seed=4)


@SETTINGS
@given(n=st.integers(1, 9), batch_size=st.integers(1, 11))
def test_predict_in_batches_equals_one_forward(n, batch_size):
    network = _small64()
    x = np.random.default_rng(n).standard_normal((n, 2, 9, 8))
    predicted = network.predict(x, batch_size=batch_size)
    assert predicted.shape == (n, 4, 1)
    np.testing.assert_allclose(predicted, network.forward(x), rtol=1e-12, atol=1e-14)


def test_predict_in_batches_float32_lenet():
    network = randomize(lenet(), seed=4)
    x = images(7, seed=4)
    predicted = network.predict(x, batch_size=3)
    assert predicted.dtype == np.float32
    # float32 GEMMs of 3 rows and of 7 sum in different orders (OpenBLAS 0.3.31 on Haswell:
    # 1.3e-5 apart); a batching mistake is off by far more
    np.testing.assert_allclose(predicted, network.forward(x), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- summary


def expected_parameter_count(layer) -> int:
    """From the layer's shapes, not from its arrays."""
    if isinstance(layer, Convolutional):
        d, h, w = layer.input_shape
        k, depth = layer.kernel_size, layer.depth
        bias = depth * (h - k + 1) * (w - k + 1) if layer.bias_mode == "untied" else depth
        return depth * d * k * k + bias
    if isinstance(layer, Dense):
        return layer.input_size * layer.output_size + layer.output_size
    assert not layer.params, f"no expected count for {layer!r}"
    return 0


@PRESETS
def test_summary_lists_layers_shapes_and_parameter_count(preset):
    network = preset()
    summary = network.summary()
    lines = summary.splitlines()
    rows = [line for line in lines if line.strip() and set(line.strip()) != {"-"}]
    header, body, total = rows[0], rows[1:-1], rows[-1]
    assert "layer" in header and "params" in header
    assert len(body) == len(network.layers)

    # Per-sample output shapes as the layers actually produce them.
    out = np.zeros((1, *network.input_shape), dtype=np.float32)
    counts = []
    for layer, row in zip(network.layers, body, strict=True):
        out = layer.forward(out)
        count = expected_parameter_count(layer)
        counts.append(count)
        assert repr(layer) in row
        assert str(out.shape[1:]) in row, (row, out.shape[1:])
        assert int(row.split()[-1].replace(",", "")) == count, row
    assert total.split()[0] == "total"
    assert int(total.split()[-1].replace(",", "")) == sum(counts)
    assert network.parameter_count() == sum(counts)
    assert sum(counts) > 0


# --------------------------------------------------------------------------- save / load


@PRESETS
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_save_load_round_trip(preset, dtype, tmp_path):
    network = randomize(preset(dtype=dtype), seed=6)
    path = tmp_path / "weights.npz"
    network.save(path)
    loaded = Network.load(path)

    assert loaded.architecture() == network.architecture()
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in network.layers]
    for ours, theirs in zip(network.layers, loaded.layers, strict=True):
        assert set(ours.params) == set(theirs.params)
        for name, value in ours.params.items():
            assert theirs.params[name].dtype == value.dtype
            np.testing.assert_array_equal(theirs.params[name], value)
            assert theirs.params[name] is not value
    x = images(5, seed=6, dtype=dtype)
    np.testing.assert_array_equal(loaded.forward(x), network.forward(x))

    # load_weights into a fresh network of the same preset is the same round trip.
    fresh = preset(seed=99, dtype=dtype)
    fresh.load_weights(path)
    np.testing.assert_array_equal(fresh.forward(x), network.forward(x))


@PRESETS
def test_saved_file_needs_no_pickle(preset, tmp_path):
    network = randomize(preset(), seed=7)
    path = tmp_path / "weights.npz"
    network.save(path)
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    assert ARCHITECTURE_KEY in arrays
    assert json.loads(str(arrays[ARCHITECTURE_KEY])) == json.loads(
        json.dumps(network.architecture())
    )
    for key, value in network.state_dict().items():
        assert arrays[key].dtype.kind == "f"
        np.testing.assert_array_equal(arrays[key], value)


def test_save_does_not_rename_the_file(tmp_path):
    path = tmp_path / "model.weights"
    tutorial().save(path)
    assert os.listdir(tmp_path) == ["model.weights"]
    Network.load(path)


class _Evil:
    """Unpickling this creates a marker directory: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _valid(tmp_path, preset=lenet):
    path = tmp_path / "valid.npz"
    preset().save(path)
    return path


def _with_arrays(tmp_path, arrays: dict, allow_pickle: bool = False):
    path = tmp_path / "crafted.npz"
    with open(path, "wb") as handle:
        np.savez(handle, allow_pickle=allow_pickle, **arrays)
    return path


def _state(preset=lenet) -> dict:
    return preset().state_dict()


def _architecture(spec) -> np.ndarray:
    return np.array(json.dumps(spec))


CORRUPT_FILES = {
    "missing": lambda t: t / "does-not-exist.npz",
    "directory": lambda t: t,
    "empty": lambda t: _write(t / "empty.npz", b""),
    "garbage": lambda t: _write(t / "garbage.npz", os.urandom(256)),
    "truncated": lambda t: _write(t / "cut.npz", _valid(t).read_bytes()[:300]),
    "flipped-bytes": lambda t: _write(t / "flip.npz", _flip(_valid(t).read_bytes())),
    "pickle": lambda t: _write(t / "evil.npz", pickle.dumps({"w": _Evil(str(t / "pwned"))})),
    "object-array": lambda t: _with_arrays(
        t,
        {ARCHITECTURE_KEY: np.array([_Evil(str(t / "pwned"))], dtype=object), **_state()},
        allow_pickle=True,
    ),
    "no-architecture": lambda t: _with_arrays(t, _state()),
    "architecture-not-json": lambda t: _with_arrays(
        t, {ARCHITECTURE_KEY: np.array("[{not json"), **_state()}
    ),
    "architecture-unknown-class": lambda t: _with_arrays(
        t, {ARCHITECTURE_KEY: _architecture([{"class": "os.system", "config": {}}])}
    ),
    "architecture-not-a-layer": lambda t: _with_arrays(
        t, {ARCHITECTURE_KEY: _architecture([{"class": "softmax", "config": {}}])}
    ),
    "architecture-bad-config": lambda t: _with_arrays(
        t, {ARCHITECTURE_KEY: _architecture([{"class": "Dense", "config": {"size": 3}}])}
    ),
    "architecture-not-a-list": lambda t: _with_arrays(t, {ARCHITECTURE_KEY: _architecture(7)}),
    "wrong-architecture": lambda t: _with_arrays(
        t, {ARCHITECTURE_KEY: _architecture(tutorial().architecture()), **_state(lenet)}
    ),
    "wrong-weight-shape": lambda t: _with_arrays(
        t,
        {
            ARCHITECTURE_KEY: _architecture(lenet().architecture()),
            **{k: v[..., :1] for k, v in _state(lenet).items()},
        },
    ),
}


# Files whose broken part is the architecture only: their weights are lenet's own.
LENET_WEIGHTS_INSIDE = {"no-architecture", "architecture-not-json", "wrong-architecture"}


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _flip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 64]) + data[middle + 64 :]


def assert_one_line_error(info, path) -> None:
    message = str(info.value)
    assert str(path) in message, message
    assert "\n" not in message, message


@pytest.mark.parametrize("kind", sorted(CORRUPT_FILES))
def test_bad_file_raises_labkit_error(kind, tmp_path):
    path = CORRUPT_FILES[kind](tmp_path)
    with pytest.raises(LabkitError) as info:
        Network.load(path)
    assert_one_line_error(info, path)
    assert not (tmp_path / "pwned").exists(), "loading ran code from the file"

    network = randomize(lenet(), seed=8)
    before = {k: v.copy() for k, v in network.state_dict().items()}
    if kind in LENET_WEIGHTS_INSIDE:
        # load_weights reads only the weights, and these are a valid set for lenet.
        network.load_weights(path)
        for key, value in network.state_dict().items():
            np.testing.assert_array_equal(value, _state(lenet)[key])
    else:
        with pytest.raises(LabkitError) as info:
            network.load_weights(path)
        assert_one_line_error(info, path)
        for key, value in network.state_dict().items():
            np.testing.assert_array_equal(value, before[key])  # nothing half-loaded
    assert not (tmp_path / "pwned").exists(), "loading ran code from the file"


@pytest.mark.parametrize(
    ("saved", "target", "fragment"),
    [
        (lenet, tutorial, "missing"),
        (tutorial, lenet, "missing"),
        (
            lambda: Network([Convolutional((1, 6, 6), 3, 2, bias="tied")]),
            lambda: Network([Convolutional((1, 6, 6), 3, 2, bias="untied")]),
            "shape",
        ),
        (lambda: Network([Dense(4, 3)]), lambda: Network([Dense(4, 5)]), "shape"),
    ],
    ids=["lenet-into-tutorial", "tutorial-into-lenet", "tied-into-untied", "dense-size"],
)
def test_load_weights_into_mismatched_network_fails_clearly(saved, target, fragment, tmp_path):
    path = tmp_path / "weights.npz"
    saved().save(path)
    network = randomize(target(), seed=9)
    before = {k: v.copy() for k, v in network.state_dict().items()}
    with pytest.raises(LabkitError) as info:
        network.load_weights(path)
    assert_one_line_error(info, path)
    assert fragment in str(info.value)
    for key, value in network.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_models_registry_builds_both_presets():
    assert set(MODELS) == {"tutorial", "lenet"}
    for name, build in MODELS.items():
        network = build(seed=1)
        out = network.forward(images(2))
        assert out.shape == (2, 10), name
        assert out.dtype == np.float32, name
        # The seed decides the initial weights.
        same, other = build(seed=1), build(seed=2)
        np.testing.assert_array_equal(same.layers[0].kernels, network.layers[0].kernels)
        assert not np.array_equal(other.layers[0].kernels, network.layers[0].kernels)
