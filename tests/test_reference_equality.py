"""The fast batched layers (labkit.layers) against the tutorial's per-sample oracle.

Every test builds a fast layer in float64, copies its parameters into the matching
``labkit.reference`` layer, runs the batch through the fast layer and each sample
through the reference, and compares the forward output, the input gradient and every
parameter gradient (the fast layer's are sums over the batch) to 1e-10.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_twins import to_reference

from labkit import layers, reference
from labkit.losses import mse_prime, softmax_cross_entropy_prime
from labkit.models import lenet, tutorial
from labkit.network import Network

TOL = 1e-10
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
seeds = st.integers(0, 2**32 - 1)


# --------------------------------------------------------------------------- helpers


def assert_close(actual, expected, what: str) -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=TOL, atol=TOL, err_msg=what)


def randomize_params(layer: layers.Layer, rng: np.random.Generator) -> None:
    """Non-zero values everywhere (the fast layers start with zero biases)."""
    for name, value in layer.params.items():
        layer.params[name] = rng.standard_normal(value.shape).astype(value.dtype)


def run_fast(layer, x, g):
    out = layer.forward(x)
    dx = layer.backward(g)
    return out, dx, {k: v.copy() for k, v in layer.grads.items()}


def run_reference(ref, xs, gs, sample_in_shape, sample_out_shape):
    """Forward/backward each sample; returns stacked outputs/input grads and summed grads."""
    outs, dxs, grads = [], [], {}
    for x, g in zip(xs, gs, strict=True):
        outs.append(ref.forward(x.reshape(sample_in_shape)))
        dxs.append(ref.backward(g.reshape(sample_out_shape)))
        for name, value in ref.grads.items():
            grads[name] = grads.get(name, 0) + value
    return np.stack(outs), np.stack(dxs), grads


def compare_layer(fast, x, rng, ref_in_shape=None, ref_out_shape=None):
    """Run ``x`` through ``fast`` and its reference; compare output, dX and every dParam."""
    ref = to_reference(fast)
    out_probe = fast.forward(x)
    g = rng.standard_normal(out_probe.shape)
    out, dx, grads = run_fast(fast, x, g)
    ref_in_shape = ref_in_shape or x.shape[1:]
    ref_out_shape = ref_out_shape or out.shape[1:]
    ref_out, ref_dx, ref_grads = run_reference(ref, x, g, ref_in_shape, ref_out_shape)

    assert out.dtype == np.float64 and dx.dtype == np.float64
    assert_close(out, ref_out.reshape(out.shape), "forward output")
    assert_close(dx, ref_dx.reshape(dx.shape), "input gradient")
    assert set(grads) == set(fast.params) == set(ref_grads)
    for name, value in grads.items():
        assert_close(value, ref_grads[name].reshape(value.shape), f"gradient of {name}")
    return out, dx, grads


# --------------------------------------------------------------------------- strategies


@st.composite
def conv_cases(draw):
    d = draw(st.integers(1, 3))
    h = draw(st.integers(3, 12))
    w = draw(st.integers(3, 12))
    k = draw(st.integers(1, min(5, h, w)))
    depth = draw(st.integers(1, 4))
    n = draw(st.integers(1, 4))
    bias = draw(st.sampled_from(["untied", "tied"]))
    return (d, h, w), k, depth, n, bias


@st.composite
def pool_cases(draw):
    p = draw(st.integers(1, 3))
    s = draw(st.integers(1, 3))
    c = draw(st.integers(1, 3))
    h = draw(st.integers(p, 11))
    w = draw(st.integers(p, 11))
    n = draw(st.integers(1, 4))
    return p, s, (n, c, h, w)


# --------------------------------------------------------------------------- layers


@SETTINGS
@given(case=conv_cases(), seed=seeds)
def test_convolutional_matches_reference(case, seed):
    input_shape, k, depth, n, bias = case
    rng = np.random.default_rng(seed)
    fast = layers.Convolutional(input_shape, k, depth, bias=bias, dtype=np.float64, rng=rng)
    randomize_params(fast, rng)
    x = rng.standard_normal((n, *input_shape))
    out, _, grads = compare_layer(fast, x, rng)
    assert out.shape == (n, depth, input_shape[1] - k + 1, input_shape[2] - k + 1)
    expected_bias_shape = out.shape[1:] if bias == "untied" else (depth,)
    assert grads["biases"].shape == expected_bias_shape


@SETTINGS
@given(
    sizes=st.tuples(st.integers(1, 20), st.integers(1, 20)),
    n=st.integers(1, 4),
    column=st.booleans(),
    seed=seeds,
)
def test_dense_matches_reference(sizes, n, column, seed):
    input_size, output_size = sizes
    rng = np.random.default_rng(seed)
    fast = layers.Dense(input_size, output_size, dtype=np.float64, rng=rng)
    randomize_params(fast, rng)
    x = rng.standard_normal((n, input_size, 1) if column else (n, input_size))
    out, dx, _ = compare_layer(
        fast, x, rng, ref_in_shape=(input_size, 1), ref_out_shape=(output_size, 1)
    )
    assert out.shape == ((n, output_size, 1) if column else (n, output_size))
    assert dx.shape == x.shape


@SETTINGS
@given(case=pool_cases(), channels_last=st.booleans(), seed=seeds)
def test_maxpool_matches_reference(case, channels_last, seed):
    p, s, shape = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)  # continuous: no ties
    if channels_last:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    out, dx, grads = compare_layer(layers.MaxPool(p, s), x, rng)
    n, c, h, w = shape
    assert out.shape == (n, c, (h - p) // s + 1, (w - p) // s + 1)
    assert grads == {}


@pytest.mark.parametrize("name", ["Sigmoid", "Tanh", "ReLU"])
@SETTINGS
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    n=st.integers(1, 4),
    scale=st.floats(0.1, 10),
    seed=seeds,
)
def test_elementwise_activation_matches_reference(name, shape, n, scale, seed):
    rng = np.random.default_rng(seed)
    x = scale * rng.standard_normal((n, *shape))
    compare_layer(getattr(layers, name)(), x, rng)


@SETTINGS
@given(
    size=st.integers(1, 20),
    n=st.integers(1, 4),
    column=st.booleans(),
    scale=st.floats(0.1, 30),
    seed=seeds,
)
def test_softmax_matches_reference(size, n, column, scale, seed):
    rng = np.random.default_rng(seed)
    x = scale * rng.standard_normal((n, size, 1) if column else (n, size))
    out, _, _ = compare_layer(layers.Softmax(), x, rng, ref_in_shape=(size, 1))
    assert out.shape == x.shape


@SETTINGS
@given(
    dims=st.lists(st.integers(1, 4), min_size=3, max_size=3),
    target=st.sampled_from(["flat", "column", "permuted"]),
    n=st.integers(1, 4),
    seed=seeds,
)
def test_reshape_matches_reference(dims, target, n, seed):
    d, h, w = dims
    size = d * h * w
    out_shape = {"flat": (size,), "column": (size, 1), "permuted": (w, d * h)}[target]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d, h, w))
    fast = layers.Reshape((d, h, w), out_shape)
    out, _, _ = compare_layer(fast, x, rng, ref_out_shape=fast.out_shape)
    assert out.shape == (n, *out_shape)


# --------------------------------------------------------------------------- whole networks


def reference_copy(network: Network) -> list:
    return [to_reference(layer) for layer in network.layers]


def reference_forward_backward(ref_layers, x, g):
    """Per-sample forward/backward; returns outputs, input grads and per-layer summed grads."""
    outs, dxs = [], []
    sums = [{} for _ in ref_layers]
    for xi, gi in zip(x, g, strict=True):
        out = xi
        for layer in ref_layers:
            out = layer.forward(out)
        outs.append(out)
        grad = gi.reshape(out.shape)
        for layer in reversed(ref_layers):
            grad = layer.backward(grad)
        dxs.append(grad)
        for layer, total in zip(ref_layers, sums, strict=True):
            for name, value in layer.grads.items():
                total[name] = total.get(name, 0) + value
    return np.stack(outs), np.stack(dxs), sums


@pytest.mark.parametrize("preset", [tutorial, lenet], ids=["tutorial", "lenet"])
@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("path", ["layers", "step"])  # step: labkit.fused's blocks
def test_network_matches_reference(preset, n, path):
    rng = np.random.default_rng(n)
    network = preset(seed=n, dtype=np.float64)
    for layer in network.layers:
        randomize_params(layer, rng)
        for name, value in layer.params.items():
            layer.params[name] = 0.3 * value  # keep sigmoids out of saturation
    ref_layers = reference_copy(network)
    x = rng.standard_normal((n, 1, 28, 28))
    forward, backward = (
        (network.forward, network.backward)
        if path == "layers"
        else (network.step_forward, network.step_backward)
    )
    out = forward(x)
    g = rng.standard_normal(out.shape)
    dx = backward(g)
    ref_out, ref_dx, ref_grads = reference_forward_backward(ref_layers, x, g)

    assert out.shape == (n, 10) and dx.shape == x.shape
    assert_close(out, ref_out.reshape(out.shape), "network output")
    assert_close(dx, ref_dx.reshape(dx.shape), "network input gradient")
    for layer, sums in zip(network.layers, ref_grads, strict=True):
        assert set(layer.grads) == set(layer.params) == set(sums)
        for name, value in layer.grads.items():
            assert_close(value, sums[name].reshape(value.shape), f"{layer} {name} gradient")


def column_softmax_ce_prime(y_true, logits):
    """The batched loss derivative applied to one column sample (a batch of one)."""
    return softmax_cross_entropy_prime(y_true.T, logits.T).T


@pytest.mark.parametrize(
    ("batched_prime", "column_prime"),
    [(mse_prime, mse_prime), (softmax_cross_entropy_prime, column_softmax_ce_prime)],
    ids=["mse", "softmax_cross_entropy"],
)
@pytest.mark.parametrize("preset", [tutorial, lenet], ids=["tutorial", "lenet"])
def test_train_step_matches_fast_sgd(preset, batched_prime, column_prime):
    n, lr = 4, 0.5
    rng = np.random.default_rng(7)
    network = preset(seed=3, dtype=np.float64)
    for layer in network.layers:
        randomize_params(layer, rng)
        for name, value in layer.params.items():
            layer.params[name] = 0.3 * value
    ref_layers = reference_copy(network)
    before = [{k: v.copy() for k, v in layer.params.items()} for layer in network.layers]

    x = rng.standard_normal((n, 1, 28, 28))
    y = np.eye(10)[rng.integers(0, 10, n)]
    out = network.forward(x)
    assert network.backward(batched_prime(y, out), lr) is not None
    reference.train_step(ref_layers, x, y[:, :, None], column_prime, lr)

    for layer, ref, old in zip(network.layers, ref_layers, before, strict=True):
        for name, value in layer.params.items():
            assert not np.array_equal(value, old[name]), f"{layer} {name} did not move"
            assert_close(value, ref.params[name].reshape(value.shape), f"updated {layer} {name}")
