"""Property tests for the gradient checker and the layer invariants it relies on.

No false alarms: every correct layer, in random valid configurations, passes
``check_layer`` (full and fast mode). Then layer properties the checker can't see
directly (linearity, max-pool routing, softmax normalization, Reshape round trips), the
checker's promise not to touch the caller's layer, and ``check_network`` on small random
networks. The property bodies are helpers so ``test_*_can_fail`` can feed them a broken
layer and watch them fail.
"""

from __future__ import annotations

import copy

import mutants as m
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit.gradcheck import check_layer, check_network
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
from labkit.network import Network

NO_FALSE_ALARM = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
PROPERTY = settings(NO_FALSE_ALARM, max_examples=50)
NETWORK = settings(NO_FALSE_ALARM, max_examples=30)

seeds = st.integers(0, 2**32 - 1)
batches = st.integers(1, 4)


def normal(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def assert_passes(layer, x, *, smooth: bool, seed: int = 0) -> None:
    """Full and fast checks pass; a smooth layer also reports no kink (a false kink
    would silently skip an element)."""
    for mode in ("full", "fast"):
        report = check_layer(layer, x, mode=mode, seed=seed)
        assert report.passed, report.table()
        if smooth:
            assert all(c.kinks == 0 for c in report.checks), report.table()


# -- strategies ------------------------------------------------------------------------------


@st.composite
def conv_configs(draw):
    d = draw(st.integers(1, 3))
    h = draw(st.integers(3, 12))
    w = draw(st.integers(3, 12))
    k = draw(st.integers(1, min(5, h, w)))
    return {
        "input_shape": (d, h, w),
        "kernel_size": k,
        "depth": draw(st.integers(1, 4)),
        "bias": draw(st.sampled_from(["untied", "tied"])),
    }


@st.composite
def pool_configs(draw):
    pool = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3))
    c = draw(st.integers(1, 3))
    h = draw(st.integers(pool, 12))
    w = draw(st.integers(pool, 12))
    return pool, stride, (c, h, w)


def factorizations(size: int) -> st.SearchStrategy[tuple[int, ...]]:
    """Shapes (1 to 3 axes) whose product is ``size``."""

    @st.composite
    def shape(draw):
        dims, rest = [], size
        for _ in range(draw(st.integers(0, 2))):
            divisor = draw(st.sampled_from([v for v in range(1, rest + 1) if rest % v == 0]))
            dims.append(divisor)
            rest //= divisor
        return (*dims, rest)

    return shape()


# -- no false alarms (4 x 100 examples) -------------------------------------------------------


@NO_FALSE_ALARM
@given(
    config=conv_configs(),
    batch=batches,
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=seeds,
)
def test_correct_convolution_passes(config, batch, dtype, seed):
    layer = Convolutional(**config, dtype=dtype, rng=seed)
    layer.params["biases"][...] = normal(seed, layer.biases.shape)  # nonzero biases
    x = normal(seed + 1, (batch, *config["input_shape"]))
    assert_passes(layer, x, smooth=True, seed=seed % 1000)


@NO_FALSE_ALARM
@given(
    n_in=st.integers(1, 12),
    n_out=st.integers(1, 12),
    batch=batches,
    column=st.booleans(),
    seed=seeds,
)
def test_correct_dense_passes(n_in, n_out, batch, column, seed):
    layer = Dense(n_in, n_out, rng=seed)
    layer.params["bias"][...] = normal(seed, (n_out,))
    x = normal(seed + 1, (batch, n_in, 1) if column else (batch, n_in))
    assert_passes(layer, x, smooth=True, seed=seed % 1000)


@NO_FALSE_ALARM
@given(config=pool_configs(), batch=batches, seed=seeds)
def test_correct_maxpool_passes(config, batch, seed):
    pool, stride, shape = config
    x = normal(seed, (batch, *shape))  # continuous draws: ties are improbable
    assert_passes(MaxPool(pool, stride), x, smooth=True, seed=seed % 1000)


@st.composite
def shape_and_activation_layers(draw):
    kind = draw(st.sampled_from(["sigmoid", "tanh", "relu", "softmax", "reshape", "flatten"]))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=3)))
    if kind == "softmax":
        shape = (draw(st.integers(1, 12)), *((1,) if draw(st.booleans()) else ()))
        return Softmax(), shape
    if kind == "reshape":
        return Reshape(shape, draw(factorizations(int(np.prod(shape))))), shape
    layer = {"sigmoid": Sigmoid, "tanh": Tanh, "relu": ReLU, "flatten": Flatten}[kind]()
    return layer, shape


@NO_FALSE_ALARM
@given(case=shape_and_activation_layers(), batch=batches, seed=seeds)
def test_correct_activation_and_shape_layers_pass(case, batch, seed):
    layer, shape = case
    x = 2 * normal(seed, (batch, *shape))
    x = np.where(np.abs(x) < 1e-3, 1e-3, x)  # keep ReLU away from its kink
    assert_passes(layer, x, smooth=not isinstance(layer, ReLU), seed=seed % 1000)


@pytest.mark.parametrize(
    ("mutant", "shape"),
    [
        (m.ConvNoKernelFlip((2, 5, 4), 3, 2, rng=0), (2, 2, 5, 4)),
        (m.DenseBiasWrongAxis(3, 2, rng=0), (2, 3)),
        (m.MaxPoolOffByOne(2, 1), (1, 2, 4, 4)),
        (m.TanhPrimeOfInput(), (2, 3)),
    ],
)
def test_no_false_alarm_property_can_fail(mutant, shape):
    with pytest.raises(AssertionError):
        assert_passes(mutant, normal(0, shape), smooth=True)


# -- convolution is linear in its input ------------------------------------------------------


def assert_linear_in_input(layer, x, z, a, b) -> None:
    """``f(a x + b z) - f(0) == a (f(x) - f(0)) + b (f(z) - f(0))``: the bias terms cancel."""
    f0 = layer.forward(np.zeros_like(x))
    left = layer.forward(a * x + b * z) - f0
    right = a * (layer.forward(x) - f0) + b * (layer.forward(z) - f0)
    np.testing.assert_allclose(left, right, rtol=1e-10, atol=1e-10)


@PROPERTY
@given(config=conv_configs(), batch=batches, seed=seeds)
def test_convolution_is_linear_in_its_input(config, batch, seed):
    layer = Convolutional(**config, dtype=np.float64, rng=seed)
    layer.params["biases"][...] = normal(seed, layer.biases.shape)
    rng = np.random.default_rng(seed)
    x, z = rng.standard_normal((2, batch, *config["input_shape"]))
    a, b = rng.uniform(-3, 3, size=2)
    assert_linear_in_input(layer, x, z, a, b)


class ConvFusedReLU(Convolutional):
    """Not a mutant of the zoo: a convolution with a ReLU fused into forward (nonlinear)."""

    def forward(self, input):
        return np.maximum(super().forward(input), 0)


def test_linearity_property_can_fail():
    layer = ConvFusedReLU((2, 5, 5), 3, 2, dtype=np.float64, rng=0)
    x, z = np.random.default_rng(0).standard_normal((2, 3, 2, 5, 5))
    with pytest.raises(AssertionError):
        assert_linear_in_input(layer, x, z, 1.5, -2.0)


# -- max-pool routing --------------------------------------------------------------------------


def routed_by_hand(x: np.ndarray, g: np.ndarray, pool: int, stride: int) -> np.ndarray:
    """Each window's gradient on its first (row-major) maximum, by explicit loops."""
    out = np.zeros_like(x)
    n, c, oh, ow = g.shape
    for s in range(n):
        for ch in range(c):
            for i in range(oh):
                for j in range(ow):
                    window = x[
                        s, ch, i * stride : i * stride + pool, j * stride : j * stride + pool
                    ]
                    a, b = np.unravel_index(np.argmax(window), window.shape)
                    out[s, ch, i * stride + a, j * stride + b] += g[s, ch, i, j]
    return out


def assert_maxpool_routes_to_the_max(layer, x, g) -> None:
    p, stride = layer.pool_size, layer.stride
    out = layer.forward(x)
    assert out.shape == g.shape
    dx = layer.backward(g)
    expected = routed_by_hand(x, g, p, stride)
    is_a_max = expected != 0  # g has no zeros, so these are exactly the argmax entries
    assert np.all(dx[~is_a_max] == 0), "gradient reached an element that is no window's max"
    np.testing.assert_allclose(dx, expected, rtol=1e-12, atol=1e-12)
    if stride >= p:  # non-overlapping windows: every output's gradient lands exactly once
        np.testing.assert_allclose(dx.sum(axis=(2, 3)), g.sum(axis=(2, 3)), rtol=1e-10)


@PROPERTY
@given(config=pool_configs(), batch=batches, seed=seeds)
def test_maxpool_backward_sends_the_gradient_to_the_max_only(config, batch, seed):
    pool, stride, shape = config
    layer = MaxPool(pool, stride)
    x = normal(seed, (batch, *shape))
    out_shape = (batch, *layer.output_shape(shape))
    g = np.random.default_rng(seed + 1).uniform(0.5, 2.0, out_shape)
    g *= np.random.default_rng(seed + 2).choice([-1.0, 1.0], out_shape)
    assert_maxpool_routes_to_the_max(layer, x, g)


@pytest.mark.parametrize("mutant", [m.MaxPoolOffByOne(2), m.MaxPoolWholeWindow(2)])
def test_maxpool_property_can_fail(mutant):
    x = normal(0, (2, 2, 4, 6))
    with pytest.raises(AssertionError):
        assert_maxpool_routes_to_the_max(mutant, x, np.ones((2, 2, 2, 3)))


# -- softmax rows sum to one ----------------------------------------------------------------


def assert_rows_are_distributions(layer, x) -> None:
    y = layer.forward(x)
    assert y.shape == x.shape
    assert np.all(np.isfinite(y)) and np.all(y >= 0) and np.all(y <= 1)
    np.testing.assert_allclose(y.reshape(len(y), -1).sum(axis=1), 1.0, rtol=1e-12)


@PROPERTY
@given(
    n=st.integers(1, 12),
    batch=batches,
    column=st.booleans(),
    scale=st.sampled_from([1.0, 30.0, 1000.0]),
    seed=seeds,
)
def test_softmax_rows_sum_to_one(n, batch, column, scale, seed):
    x = scale * normal(seed, (batch, n, 1) if column else (batch, n))
    assert_rows_are_distributions(Softmax(), x)


class SoftmaxOverBatch(Softmax):
    """Not a mutant of the zoo: normalizes over the batch axis instead of each sample."""

    def forward(self, input):
        e = np.exp(input - input.max(axis=0, keepdims=True))
        return e / e.sum(axis=0, keepdims=True)


def test_softmax_property_can_fail():
    with pytest.raises(AssertionError):
        assert_rows_are_distributions(SoftmaxOverBatch(), normal(0, (3, 4)))


# -- Reshape backward inverts forward -------------------------------------------------------


def assert_backward_inverts_forward(layer, x) -> None:
    y = layer.forward(x)
    np.testing.assert_array_equal(layer.backward(y), x)
    g = normal(7, y.shape)
    np.testing.assert_array_equal(layer.forward(layer.backward(g)), g)


@st.composite
def reshape_layers(draw):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))
    if draw(st.booleans()):
        return Flatten(), shape
    return Reshape(shape, draw(factorizations(int(np.prod(shape))))), shape


@PROPERTY
@given(case=reshape_layers(), batch=batches, seed=seeds)
def test_reshape_backward_inverts_forward(case, batch, seed):
    layer, shape = case
    assert_backward_inverts_forward(layer, normal(seed, (batch, *shape)))


class ReshapeTransposedBackward(Reshape):
    """Not a mutant of the zoo: backward transposes instead of reshaping back."""

    def backward(self, output_gradient, learning_rate=None):
        n = output_gradient.shape[0]
        return output_gradient.reshape(n, *self.input_shape[::-1]).transpose(0, 2, 1)


def test_reshape_property_can_fail():
    with pytest.raises(AssertionError):
        assert_backward_inverts_forward(
            ReshapeTransposedBackward((2, 3), (6,)), normal(0, (2, 2, 3))
        )


# -- the checker never touches the caller's layer -------------------------------------------


def snapshot(layer) -> dict:
    """Everything of the layer a check could disturb, bit for bit."""
    state = {}
    for key, value in vars(layer).items():
        if isinstance(value, dict):
            value = {k: (v.dtype, v.shape, v.tobytes(), id(v)) for k, v in value.items()}
        elif isinstance(value, np.ndarray):
            value = (value.dtype, value.shape, value.tobytes(), id(value))
        state[key] = value
    return state


def assert_check_leaves_layer_alone(check, layer, x) -> None:
    before, x_before = snapshot(layer), x.copy()
    dtypes = {k: v.dtype for k, v in layer.params.items()}
    check(layer, x)
    assert snapshot(layer) == before
    assert {k: v.dtype for k, v in layer.params.items()} == dtypes
    np.testing.assert_array_equal(x, x_before)


@PROPERTY
@given(
    config=conv_configs(),
    batch=batches,
    dtype=st.sampled_from([np.float32, np.float64]),
    mode=st.sampled_from(["full", "fast"]),
    trained=st.booleans(),
)
def test_check_leaves_the_callers_layer_bit_identical(config, batch, dtype, mode, trained):
    layer = Convolutional(**config, dtype=dtype, rng=batch)
    x = normal(batch, (batch, *config["input_shape"])).astype(dtype)
    if trained:  # a layer with cached input and grads from a training step
        layer.backward(layer.forward(x), learning_rate=0.1)
    assert_check_leaves_layer_alone(
        lambda lay, inp: check_layer(lay, inp, mode=mode, max_elements=20), layer, x
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_layer_left_alone(dtype):
    layer = Dense(5, 3, dtype=dtype, rng=0)
    x = normal(0, (2, 5)).astype(dtype)
    assert_check_leaves_layer_alone(check_layer, layer, x)
    assert layer.weights.dtype == dtype


def test_leave_alone_property_can_fail():
    """A 'checker' that converts the layer to float64 in place is caught."""
    layer = Dense(5, 3, rng=0)

    def meddling(lay, x):
        lay.astype(np.float64)
        return check_layer(lay, x)

    with pytest.raises(AssertionError):
        assert_check_leaves_layer_alone(meddling, layer, normal(0, (2, 5)))


# -- check_network on small random networks -------------------------------------------------


@st.composite
def networks(draw):
    """conv -> relu -> pool -> reshape -> dense, with a batch, one-hot targets and a seed."""
    d = draw(st.integers(1, 2))
    h = draw(st.integers(4, 9))
    w = draw(st.integers(4, 9))
    k = draw(st.integers(1, 3))
    depth = draw(st.integers(1, 3))
    pool = draw(st.integers(1, 2))
    classes = draw(st.integers(2, 5))
    bias = draw(st.sampled_from(["untied", "tied"]))
    seed = draw(seeds)
    rng = np.random.default_rng(seed)
    conv = Convolutional((d, h, w), k, depth, bias=bias, rng=rng)
    pooling = MaxPool(pool)
    flat = pooling.output_shape(conv.out_shape)
    size = int(np.prod(flat))
    network = Network(
        [conv, ReLU(), pooling, Reshape(flat, (size,)), Dense(size, classes, rng=rng)]
    )
    batch = draw(batches)
    x = rng.standard_normal((batch, d, h, w))
    y = np.eye(classes)[rng.integers(0, classes, batch)]
    return network, x, y


@NETWORK
@given(case=networks())
def test_check_network_passes_in_fast_mode(case):
    network, x, y = case
    report = check_network(network, x, y, mode="fast")
    assert report.passed, report.table()
    assert {c.tensor for c in report.checks} == {"input", "kernels", "biases", "weights", "bias"}


@NETWORK
@given(case=networks(), loss=st.sampled_from(["softmax_cross_entropy", "mse"]))
def test_check_network_passes_in_full_mode_with_max_elements(case, loss):
    network, x, y = case
    report = check_network(network, x, y, loss=loss, mode="full", max_elements=12)
    assert report.passed, report.table()
    assert all(c.checked == min(12, int(np.prod(c.shape))) for c in report.checks)


def test_network_property_can_fail():
    rng = np.random.default_rng(0)
    network = Network(
        [
            m.ConvNoKernelFlip((1, 5, 5), 2, 2, rng=rng),
            ReLU(),
            MaxPool(2),
            Reshape((2, 2, 2), (8,)),
            Dense(8, 3, rng=rng),
        ]
    )
    x, y = rng.standard_normal((2, 1, 5, 5)), np.eye(3)[[0, 2]]
    for mode in ("fast", "full"):
        report = check_network(network, x, y, mode=mode, max_elements=12)
        assert [c.tensor for c in report.failures] == ["input"]
    # and the same network with the real convolution passes
    network.layers[0] = m.correct_twin(network.layers[0])
    assert check_network(copy.deepcopy(network), x, y, mode="full", max_elements=12).passed
