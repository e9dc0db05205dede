"""Contract tests for the batched layers: dtypes, shape errors, the SGD update, MaxPool's
tie rule and memory layouts, Dense's two layouts, Softmax's stability, Reshape/Flatten."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import softmax as scipy_softmax

from labkit.layers import (
    Activation,
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
from labkit.network import Network

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
seeds = st.integers(0, 2**32 - 1)


def channels_last(x: np.ndarray) -> np.ndarray:
    """The same values as ``x`` in channels-last memory (what a convolution returns)."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


# --------------------------------------------------------------------------- dtypes

# (id, factory(dtype, rng), per-batch input shape)
LAYER_CASES = [
    ("conv-untied", lambda dt, r: Convolutional((2, 7, 6), 3, 4, dtype=dt, rng=r), (3, 2, 7, 6)),
    (
        "conv-tied",
        lambda dt, r: Convolutional((2, 7, 6), 3, 4, bias="tied", dtype=dt, rng=r),
        (3, 2, 7, 6),
    ),
    ("conv-k1", lambda dt, r: Convolutional((3, 4, 5), 1, 2, dtype=dt, rng=r), (2, 3, 4, 5)),
    (  # one channel and a tied bias: im2col by shifted images, the bias inside the GEMM
        "conv-1ch-tied",
        lambda dt, r: Convolutional((1, 7, 6), 3, 4, bias="tied", dtype=dt, rng=r),
        (3, 1, 7, 6),
    ),
    ("conv-1ch", lambda dt, r: Convolutional((1, 7, 6), 3, 4, dtype=dt, rng=r), (3, 1, 7, 6)),
    ("dense", lambda dt, r: Dense(5, 3, dtype=dt, rng=r), (4, 5)),
    ("dense-column", lambda dt, r: Dense(5, 3, dtype=dt, rng=r), (4, 5, 1)),
    ("maxpool", lambda dt, r: MaxPool(2), (2, 3, 7, 6)),
    ("maxpool-overlap", lambda dt, r: MaxPool(3, 1), (2, 3, 7, 6)),
    ("maxpool-sparse", lambda dt, r: MaxPool(2, 3), (2, 3, 7, 6)),
    ("reshape", lambda dt, r: Reshape((2, 3, 4), (24,)), (3, 2, 3, 4)),
    ("reshape-column", lambda dt, r: Reshape((2, 3, 4), (24, 1)), (3, 2, 3, 4)),
    ("flatten", lambda dt, r: Flatten(), (3, 2, 3, 4)),
    ("sigmoid", lambda dt, r: Sigmoid(), (3, 2, 5)),
    ("tanh", lambda dt, r: Tanh(), (3, 2, 5)),
    ("relu", lambda dt, r: ReLU(), (3, 2, 5)),
    ("activation", lambda dt, r: Activation(np.tanh, lambda x: 1 - np.tanh(x) ** 2), (3, 4)),
    ("softmax", lambda dt, r: Softmax(), (3, 7)),
    ("softmax-column", lambda dt, r: Softmax(), (3, 7, 1)),
]
PARAM_CASES = [case for case in LAYER_CASES if case[0].startswith(("conv", "dense"))]


DTYPE_CASES = [
    pytest.param(factory, shape, layout, id=f"{name}-{layout}")
    for name, factory, shape in LAYER_CASES
    for layout in (["contiguous", "channels-last"] if len(shape) == 4 else ["contiguous"])
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("factory", "shape", "layout"), DTYPE_CASES)
def test_layer_keeps_dtype(factory, shape, layout, dtype):
    rng = np.random.default_rng(0)
    layer = factory(dtype, rng)
    x = rng.standard_normal(shape).astype(dtype)
    if layout == "channels-last":
        x = channels_last(x)
    out = layer.forward(x)
    assert out.dtype == dtype
    g = rng.standard_normal(out.shape).astype(dtype)
    dx = layer.backward(g, 0.01)
    assert dx.dtype == dtype
    assert dx.shape == x.shape
    assert set(layer.grads) == set(layer.params)
    for name in layer.params:
        assert layer.params[name].dtype == dtype, name
        assert layer.grads[name].dtype == dtype, name
        assert layer.grads[name].shape == layer.params[name].shape, name


# --------------------------------------------------------------------------- shape errors

SHAPE_ERROR_CASES = [
    # (id, layer factory, bad input shape, fragment naming the expected shape)
    ("conv-channels", lambda: Convolutional((1, 6, 6), 3, 2), (2, 2, 6, 6), "(N, 1, 6, 6)"),
    ("conv-width", lambda: Convolutional((1, 6, 6), 3, 2), (2, 1, 6, 5), "(N, 1, 6, 6)"),
    ("conv-no-batch", lambda: Convolutional((1, 6, 6), 3, 2), (1, 6, 6), "(N, 1, 6, 6)"),
    ("dense-size", lambda: Dense(4, 3), (2, 5), "(N, 4)"),
    ("dense-not-column", lambda: Dense(4, 3), (2, 4, 2), "(N, 4)"),
    ("dense-no-batch", lambda: Dense(4, 3), (4,), "(N, 4)"),
    ("reshape-size", lambda: Reshape((2, 3), (6,)), (2, 3, 2), "(N, 2, 3)"),
    ("reshape-rank", lambda: Reshape((2, 3), (6,)), (2, 6), "(N, 2, 3)"),
    ("maxpool-rank", lambda: MaxPool(2), (2, 3, 4), "(N, C, H, W)"),
    ("maxpool-too-small", lambda: MaxPool(3), (1, 1, 2, 5), "(N, C, H, W)"),
    ("softmax-1d", lambda: Softmax(), (5,), "(N, n)"),
]


def assert_names_shapes(message: str, layer_name: str, expected: str, received) -> None:
    assert layer_name in message, message
    assert expected in message, message
    assert str(tuple(received)) in message, message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("factory", "bad_shape", "expected"),
    [c[1:] for c in SHAPE_ERROR_CASES],
    ids=[c[0] for c in SHAPE_ERROR_CASES],
)
def test_wrong_input_shape_names_layer_and_shapes(factory, bad_shape, expected):
    layer = factory()
    with pytest.raises(ValueError) as info:
        layer.forward(np.zeros(bad_shape, dtype=np.float32))
    assert_names_shapes(str(info.value), type(layer).__name__, expected, bad_shape)

    # Inside a network the message uses the network's name for the layer.
    named = factory()
    Network([named])
    with pytest.raises(ValueError) as info:
        named.forward(np.zeros(bad_shape, dtype=np.float32))
    assert_names_shapes(str(info.value), named.name, expected, bad_shape)


@pytest.mark.parametrize(
    ("factory", "good", "bad_grad"),
    [
        (lambda: Convolutional((1, 6, 6), 3, 2), (2, 1, 6, 6), (2, 2, 4, 3)),
        (lambda: Dense(4, 3), (2, 4), (2, 4)),
        (lambda: Reshape((2, 3), (6,)), (2, 2, 3), (2, 5)),
        (lambda: MaxPool(2), (2, 1, 6, 6), (2, 1, 2, 3)),
    ],
    ids=["conv", "dense", "reshape", "maxpool"],
)
def test_wrong_gradient_shape_raises(factory, good, bad_grad):
    layer = factory()
    layer.forward(np.ones(good, dtype=np.float32))
    with pytest.raises(ValueError) as info:
        layer.backward(np.ones(bad_grad, dtype=np.float32))
    assert type(layer).__name__ in str(info.value)
    assert str(tuple(bad_grad)) in str(info.value)


# --------------------------------------------------------------------------- SGD update


@pytest.mark.parametrize(
    ("factory", "shape"), [c[1:] for c in PARAM_CASES], ids=[c[0] for c in PARAM_CASES]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@SETTINGS
@given(lr=st.floats(1e-4, 10), seed=seeds)
def test_backward_with_learning_rate_applies_sgd(factory, shape, dtype, lr, seed):
    rng = np.random.default_rng(seed)
    layer = factory(dtype, rng)
    for name, value in layer.params.items():
        layer.params[name] = rng.standard_normal(value.shape).astype(dtype)
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(layer.forward(x).shape).astype(dtype)

    dx_plain = layer.backward(g)
    grads = {k: v.copy() for k, v in layer.grads.items()}
    before = {k: v.copy() for k, v in layer.params.items()}
    arrays = dict(layer.params)  # the update is in place: the same array objects

    dx_sgd = layer.backward(g, lr)
    np.testing.assert_array_equal(dx_sgd, dx_plain)  # computed with the old weights
    for name, param in layer.params.items():
        assert param is arrays[name]
        np.testing.assert_array_equal(layer.grads[name], grads[name])
        np.testing.assert_array_equal(param, before[name] - lr * grads[name])
        assert not np.array_equal(param, before[name])


@pytest.mark.parametrize("bias", ["untied", "tied"])
@SETTINGS
@given(k=st.integers(1, 4), depth=st.integers(1, 3), n=st.integers(1, 3), seed=seeds)
def test_conv_backward_without_input_gradient(bias, k, depth, n, seed):
    rng = np.random.default_rng(seed)
    layer = Convolutional((2, 6, 7), k, depth, bias=bias, dtype=np.float64, rng=rng)
    x = rng.standard_normal((n, 2, 6, 7))
    g = rng.standard_normal(layer.forward(x).shape)
    dx = layer.backward(g)
    assert dx is not None and dx.shape == x.shape
    full = {k: v.copy() for k, v in layer.grads.items()}

    assert layer.backward(g, input_gradient=False) is None
    assert set(layer.grads) == set(full)
    for name, value in full.items():
        np.testing.assert_array_equal(layer.grads[name], value)

    before = {k: v.copy() for k, v in layer.params.items()}
    assert layer.backward(g, 0.1, input_gradient=False) is None
    for name, param in layer.params.items():
        np.testing.assert_array_equal(param, before[name] - 0.1 * full[name])


# --------------------------------------------------------------------------- MaxPool


def naive_maxpool(x, g, p, s):
    """Loop over every window; the first maximum in row-major order takes the gradient."""
    n, c, h, w = x.shape
    oh, ow = (h - p) // s + 1, (w - p) // s + 1
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    dx = np.zeros(x.shape, dtype=g.dtype)
    for i, j, y, z in np.ndindex(n, c, oh, ow):
        window = x[i, j, y * s : y * s + p, z * s : z * s + p]
        a, b = divmod(int(np.argmax(window)), p)
        out[i, j, y, z] = window[a, b]
        dx[i, j, y * s + a, z * s + b] += g[i, j, y, z]
    return out, dx


@st.composite
def tie_cases(draw):
    p = draw(st.integers(1, 3))
    s = draw(st.integers(1, 3))
    shape = (
        draw(st.integers(1, 3)),
        draw(st.integers(1, 3)),
        draw(st.integers(p, 9)),
        draw(st.integers(p, 9)),
    )
    return p, s, shape


@SETTINGS
@given(
    case=tie_cases(),
    levels=st.integers(1, 3),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=seeds,
)
def test_maxpool_tie_rule_and_layouts(case, levels, dtype, seed):
    p, s, shape = case
    rng = np.random.default_rng(seed)
    x = rng.integers(0, levels, shape).astype(dtype)  # few distinct values: many ties
    layer = MaxPool(p, s)
    out = layer.forward(x)
    g = rng.integers(-5, 6, out.shape).astype(dtype)  # integers: sums are exact
    dx = layer.backward(g)

    expected_out, expected_dx = naive_maxpool(x, g, p, s)
    np.testing.assert_array_equal(out, expected_out)
    np.testing.assert_array_equal(dx, expected_dx)
    assert dx.sum() == g.sum()  # every window routes all of its gradient

    # The same values in channels-last memory give identical results.
    other = MaxPool(p, s)
    out_cl = other.forward(channels_last(x))
    dx_cl = other.backward(channels_last(g))
    np.testing.assert_array_equal(out_cl, out)
    np.testing.assert_array_equal(dx_cl, dx)


def test_maxpool_all_equal_window_sends_gradient_to_first_element():
    x = np.full((1, 2, 4, 6), 3.0)
    layer = MaxPool(2)
    g = np.arange(1.0, 1 + 2 * 2 * 3).reshape(1, 2, 2, 3)
    layer.forward(x)
    dx = layer.backward(g)
    expected = np.zeros_like(x)
    expected[:, :, ::2, ::2] = g
    np.testing.assert_array_equal(dx, expected)


def test_maxpool_overlapping_windows_accumulate():
    # One global maximum shared by every 2x2 window of a 3x3 map with stride 1.
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 5.0
    layer = MaxPool(2, 1)
    out = layer.forward(x)
    np.testing.assert_array_equal(out, np.full((1, 1, 2, 2), 5.0))
    g = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    dx = layer.backward(g)
    assert dx[0, 0, 1, 1] == g.sum()
    assert np.count_nonzero(dx) == 1


# --------------------------------------------------------------------------- Dense layouts


@SETTINGS
@given(
    sizes=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    n=st.integers(1, 5),
    seed=seeds,
)
def test_dense_row_and_column_layouts_agree(sizes, n, seed):
    rng = np.random.default_rng(seed)
    in_size, out_size = sizes
    layer = Dense(in_size, out_size, dtype=np.float64, rng=rng)
    layer.params["bias"] = rng.standard_normal(out_size)
    x = rng.standard_normal((n, in_size))
    g = rng.standard_normal((n, out_size))

    out_rows = layer.forward(x)
    dx_rows = layer.backward(g)
    grads_rows = {k: v.copy() for k, v in layer.grads.items()}
    out_cols = layer.forward(x[:, :, None])
    dx_cols = layer.backward(g[:, :, None])

    assert out_rows.shape == (n, out_size)
    assert out_cols.shape == (n, out_size, 1)
    assert dx_rows.shape == (n, in_size)
    assert dx_cols.shape == (n, in_size, 1)
    np.testing.assert_allclose(out_rows, x @ layer.weights.T + layer.bias, rtol=1e-12)
    np.testing.assert_array_equal(out_cols[:, :, 0], out_rows)
    np.testing.assert_array_equal(dx_cols[:, :, 0], dx_rows)
    for name, value in grads_rows.items():
        np.testing.assert_array_equal(layer.grads[name], value)


# --------------------------------------------------------------------------- Softmax


@SETTINGS
@given(
    n=st.integers(1, 5),
    size=st.integers(1, 12),
    scale=st.sampled_from([1.0, 1e2, 1e4, 1e30]),
    column=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=seeds,
)
def test_softmax_rows_sum_to_one_and_are_stable(n, size, scale, column, dtype, seed):
    rng = np.random.default_rng(seed)
    x = (scale * rng.standard_normal((n, size))).astype(dtype)
    layer = Softmax()
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = layer.forward(x[:, :, None] if column else x)
        dx = layer.backward(rng.standard_normal(y.shape).astype(dtype))
    assert y.shape == ((n, size, 1) if column else (n, size))
    rows = y.reshape(n, size)
    assert np.all(np.isfinite(rows)) and np.all(np.isfinite(dx))
    assert np.all(rows >= 0)
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, rtol=1e-5 if dtype == np.float32 else 1e-12)
    np.testing.assert_array_equal(rows.argmax(axis=1), x.argmax(axis=1))
    expected = scipy_softmax(x.astype(np.float64), axis=1)
    np.testing.assert_allclose(rows, expected, atol=1e-6 if dtype == np.float32 else 1e-12)


def test_softmax_huge_logits():
    x = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4], [1e300, 1e300, -1e300]])
    layer = Softmax()
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = layer.forward(x)
        dx = layer.backward(np.ones_like(x))
    np.testing.assert_allclose(y, scipy_softmax(x, axis=1))
    np.testing.assert_allclose(y.sum(axis=1), 1.0)
    np.testing.assert_allclose(dx, 0.0, atol=1e-12)  # softmax is invariant to a constant shift


# --------------------------------------------------------------------------- Reshape, Flatten, ReLU


@SETTINGS
@given(
    dims=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    n=st.integers(1, 4),
    seed=seeds,
)
def test_reshape_and_flatten_backward_invert_forward(dims, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *dims))
    size = int(np.prod(dims))
    for layer, out_shape in [
        (Reshape(tuple(dims), (size,)), (n, size)),
        (Reshape(tuple(dims), (1, size, 1)), (n, 1, size, 1)),
        (Reshape(tuple(dims), tuple(reversed(dims))), (n, *reversed(dims))),
        (Flatten(), (n, size)),
    ]:
        out = layer.forward(x)
        assert out.shape == out_shape
        np.testing.assert_array_equal(out.reshape(x.shape), x)
        back = layer.backward(out)
        assert back.shape == x.shape
        np.testing.assert_array_equal(back, x)
        g = rng.standard_normal(out.shape)
        np.testing.assert_array_equal(layer.backward(g), g.reshape(x.shape))


def test_reshape_rejects_different_sizes():
    with pytest.raises(ValueError, match="Reshape"):
        Reshape((2, 3), (7,))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_derivative_at_zero_is_zero(dtype):
    x = np.array([[-2.0, -0.0, 0.0, 1e-30, 3.0]], dtype=dtype)
    layer = ReLU()
    out = layer.forward(x)
    np.testing.assert_array_equal(out, np.maximum(x, 0))
    g = np.full_like(x, 7.0)
    dx = layer.backward(g)
    np.testing.assert_array_equal(dx, np.where(x > 0, g, 0))
    assert dx[0, 1] == 0 and dx[0, 2] == 0
    # The generic Activation path (the tutorial's activation_prime) agrees.
    np.testing.assert_array_equal(layer.activation_prime(x), (x > 0).astype(dtype))
