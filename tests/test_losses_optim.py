"""Losses (values, derivatives against finite differences, stability) and the optimizers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp
from scipy.special import softmax as scipy_softmax

from labkit.layers import Dense, Layer
from labkit.losses import LOSSES, log_softmax, softmax_cross_entropy, softmax_cross_entropy_prime
from labkit.network import Network
from labkit.optim import OPTIMIZERS, SGD, Adam, Momentum

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
seeds = st.integers(0, 2**32 - 1)


# --------------------------------------------------------------------------- losses


def loss_inputs(name: str, rng: np.random.Generator, shape: tuple[int, ...]):
    """(y_true, y_pred) in each loss's domain."""
    if name == "binary_cross_entropy":
        return rng.uniform(0, 1, shape), rng.uniform(0.05, 0.95, shape)
    if name == "softmax_cross_entropy":
        # Targets are distributions over the classes (one-hot or soft), one per sample.
        return rng.dirichlet(np.ones(shape[1]), shape[0]), 3 * rng.standard_normal(shape)
    return rng.standard_normal(shape), rng.standard_normal(shape)


def expected_loss(name: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Each loss from its textbook definition."""
    if name == "mse":
        return float(np.mean((y_pred - y_true) ** 2))
    if name == "binary_cross_entropy":
        return float(np.mean(-(y_true * np.log(y_pred) + (1 - y_true) * np.log(1 - y_pred))))
    probabilities = scipy_softmax(y_pred, axis=1)
    return float(np.mean(-(y_true * np.log(probabilities)).sum(axis=1)))


@pytest.mark.parametrize("name", sorted(LOSSES))
@SETTINGS
@given(n=st.integers(1, 5), k=st.integers(1, 6), seed=seeds)
def test_loss_value_and_derivative(name, n, k, seed):
    loss = LOSSES[name]
    assert loss.name == name
    rng = np.random.default_rng(seed)
    y_true, y_pred = loss_inputs(name, rng, (n, k))

    value = loss.value(y_true, y_pred)
    assert isinstance(value, float)
    assert value == pytest.approx(expected_loss(name, y_true, y_pred), rel=1e-12, abs=1e-12)

    grad = loss.prime(y_true, y_pred)
    assert grad.shape == y_pred.shape
    eps = 1e-6
    numeric = np.zeros_like(y_pred)
    for index in np.ndindex(y_pred.shape):
        plus, minus = y_pred.copy(), y_pred.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric[index] = (loss.value(y_true, plus) - loss.value(y_true, minus)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def test_softmax_cross_entropy_is_finite_for_huge_logits():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0], [1e4, 1e4, -1e4], [-1e4, -1e4, -1e4]])
    targets = np.eye(3)[[0, 0, 2, 1]]  # includes a target sitting at -1e4
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value = softmax_cross_entropy(targets, logits)
        grad = softmax_cross_entropy_prime(targets, logits)
        logp = log_softmax(logits)
    assert math.isfinite(value)
    assert np.all(np.isfinite(grad)) and np.all(np.isfinite(logp))
    expected = np.mean(logsumexp(logits, axis=1) - (targets * logits).sum(axis=1))
    assert value == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(grad, (scipy_softmax(logits, axis=1) - targets) / len(logits))
    np.testing.assert_allclose(logp, logits - logsumexp(logits, axis=1, keepdims=True))


def test_softmax_cross_entropy_accepts_column_logits():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 10))
    targets = np.eye(10)[[1, 2, 3, 4]]
    assert softmax_cross_entropy(targets[:, :, None], logits[:, :, None]) == pytest.approx(
        softmax_cross_entropy(targets, logits), rel=1e-14
    )
    np.testing.assert_allclose(
        softmax_cross_entropy_prime(targets[:, :, None], logits[:, :, None])[:, :, 0],
        softmax_cross_entropy_prime(targets, logits),
    )


# --------------------------------------------------------------------------- optimizers


class Quadratic(Layer):
    """A layer holding two parameters of ``E = sum(a/2 (p - c)^2)``; grad = a (p - c)."""

    def __init__(self, rng: np.random.Generator, dtype=np.float64) -> None:
        super().__init__()
        self.a, self.c = {}, {}
        for name, shape in (("w", (3, 4)), ("b", (4,))):
            self.params[name] = rng.standard_normal(shape).astype(dtype)
            self.a[name] = rng.uniform(0.5, 3.0, shape).astype(dtype)
            self.c[name] = rng.standard_normal(shape).astype(dtype)

    def gradient(self, name: str, param: np.ndarray) -> np.ndarray:
        return self.a[name] * (param - self.c[name])

    def compute_grads(self) -> None:
        self.grads = {name: self.gradient(name, p) for name, p in self.params.items()}

    def energy(self) -> float:
        return sum(
            float(np.sum(self.a[k] / 2 * (p - self.c[k]) ** 2)) for k, p in self.params.items()
        )


def two_quadratics(seed: int, dtype=np.float64) -> list[Quadratic]:
    """Two layers whose parameters share names: optimizer state must not mix them."""
    rng = np.random.default_rng(seed)
    return [Quadratic(rng, dtype), Quadratic(rng, dtype)]


def run(layers, optimizer, steps: int) -> None:
    for _ in range(steps):
        for layer in layers:
            layer.compute_grads()
        optimizer.step()


@SETTINGS
@given(lr=st.floats(1e-4, 1.0), steps=st.integers(1, 3), seed=seeds)
def test_sgd_steps_follow_the_formula(lr, steps, seed):
    layers = two_quadratics(seed)
    expected = [{k: p.copy() for k, p in layer.params.items()} for layer in layers]
    arrays = [dict(layer.params) for layer in layers]
    run(layers, SGD(layers, lr), steps)
    for layer, params in zip(layers, expected, strict=True):
        for name, p in params.items():
            for _ in range(steps):
                p -= lr * layer.gradient(name, p)
    for layer, params, same in zip(layers, expected, arrays, strict=True):
        for name, p in params.items():
            assert layer.params[name] is same[name]  # updated in place
            np.testing.assert_allclose(layer.params[name], p, rtol=1e-13, atol=1e-15)


@SETTINGS
@given(lr=st.floats(1e-4, 0.5), mu=st.floats(0.0, 0.99), steps=st.integers(1, 4), seed=seeds)
def test_momentum_steps_follow_the_formula(lr, mu, steps, seed):
    layers = two_quadratics(seed)
    expected = []
    for layer in layers:
        params = {}
        for name, p in layer.params.items():
            p, velocity = p.copy(), np.zeros_like(p)
            for _ in range(steps):
                velocity = mu * velocity - lr * layer.gradient(name, p)
                p = p + velocity
            params[name] = p
        expected.append(params)
    run(layers, Momentum(layers, lr=lr, momentum=mu), steps)
    for layer, params in zip(layers, expected, strict=True):
        for name, p in params.items():
            np.testing.assert_allclose(layer.params[name], p, rtol=1e-12, atol=1e-14)


@SETTINGS
@given(
    lr=st.floats(1e-4, 0.5),
    beta1=st.floats(0.0, 0.99),
    beta2=st.floats(0.5, 0.9999),
    eps=st.sampled_from([1e-7, 1e-8, 1e-3]),
    steps=st.integers(1, 4),
    seed=seeds,
)
def test_adam_steps_follow_the_formula(lr, beta1, beta2, eps, steps, seed):
    layers = two_quadratics(seed)
    expected = []
    for layer in layers:
        params = {}
        for name, p in layer.params.items():
            p, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
            for t in range(1, steps + 1):
                g = layer.gradient(name, p)
                m = beta1 * m + (1 - beta1) * g
                v = beta2 * v + (1 - beta2) * g**2
                # Kingma & Ba, end of section 2 (the form Keras implements).
                alpha = lr * np.sqrt(1 - beta2**t) / (1 - beta1**t)
                p = p - alpha * m / (np.sqrt(v) + eps)
            params[name] = p
        expected.append(params)
    optimizer = Adam(layers, lr=lr, beta1=beta1, beta2=beta2, eps=eps)
    run(layers, optimizer, steps)
    assert optimizer.iterations == steps
    for layer, params in zip(layers, expected, strict=True):
        for name, p in params.items():
            np.testing.assert_allclose(layer.params[name], p, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizers_descend_and_keep_float32(name):
    layers = two_quadratics(0, dtype=np.float32)
    start = sum(layer.energy() for layer in layers)
    optimizer = OPTIMIZERS[name](layers, lr=0.05)
    run(layers, optimizer, 50)
    assert sum(layer.energy() for layer in layers) < 0.5 * start
    for layer in layers:
        for p in layer.params.values():
            assert p.dtype == np.float32


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_accepts_a_network(name):
    rng = np.random.default_rng(1)
    network = Network([Dense(3, 2, dtype=np.float64, rng=rng)])
    x, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    before = {k: v.copy() for k, v in network.state_dict().items()}
    optimizer = OPTIMIZERS[name](network, lr=0.1)
    network.forward(x)
    network.backward(g)
    optimizer.step()
    for key, value in network.state_dict().items():
        assert not np.array_equal(value, before[key]), key


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("lr", [0.0, -1e-3, -1.0, math.nan, math.inf, -math.inf])
def test_invalid_learning_rate_raises(name, lr):
    with pytest.raises(ValueError, match="learning rate"):
        OPTIMIZERS[name](two_quadratics(0), lr=lr)


@pytest.mark.tensorflow
@pytest.mark.parametrize(
    ("lr", "beta1", "beta2", "eps"), [(1e-3, 0.9, 0.999, 1e-7), (0.05, 0.8, 0.95, 1e-4)]
)
def test_adam_matches_keras(lr, beta1, beta2, eps):
    tf = pytest.importorskip("tensorflow")
    layers = two_quadratics(3, dtype=np.float32)
    variables = [
        {name: tf.Variable(p.copy()) for name, p in layer.params.items()} for layer in layers
    ]
    keras = tf.keras.optimizers.Adam(learning_rate=lr, beta_1=beta1, beta_2=beta2, epsilon=eps)
    ours = Adam(layers, lr=lr, beta1=beta1, beta2=beta2, eps=eps)
    for _ in range(5):
        pairs = [
            (tf.constant(layer.gradient(name, var.numpy())), var)
            for layer, named in zip(layers, variables, strict=True)
            for name, var in named.items()
        ]
        keras.apply_gradients(pairs)
        run(layers, ours, 1)
        for layer, named in zip(layers, variables, strict=True):
            for name, var in named.items():
                np.testing.assert_allclose(layer.params[name], var.numpy(), rtol=1e-5, atol=1e-6)


def per_tensor_adam(param, grad, m, v, t, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-7):
    """Adam on one tensor, in the order of operations labkit's flat vectors use."""
    m *= beta1
    m += grad * (1 - beta1)
    v *= beta2
    v += (grad * grad) * (1 - beta2)
    step = lr * np.sqrt(1 - beta2**t) / (1 - beta1**t)
    update = m / (np.sqrt(v) + eps)
    update *= step  # in place: rounded to the parameter's dtype before the subtraction
    param -= update


def test_flat_adam_equals_per_tensor_adam_to_the_bit_over_mixed_dtypes():
    rng = np.random.default_rng(4)
    layers = [Dense(5, 4, dtype=np.float32, rng=rng), Dense(4, 3, dtype=np.float64, rng=rng)]
    twins = {(i, n): p.copy() for i, layer in enumerate(layers) for n, p in layer.params.items()}
    moments = {key: (np.zeros_like(p), np.zeros_like(p)) for key, p in twins.items()}
    optimizer = Adam(layers)
    for t in range(1, 6):
        for (index, name), twin in twins.items():
            grad = rng.standard_normal(twin.shape).astype(twin.dtype)
            layers[index].grads[name] = grad
            per_tensor_adam(twin, grad, *moments[index, name], t)
        optimizer.step()
    for (index, name), twin in twins.items():
        assert layers[index].params[name].dtype == twin.dtype
        assert np.array_equal(layers[index].params[name], twin), (index, name)


def test_flat_adam_keeps_the_moments_of_parameters_that_remain():
    rng = np.random.default_rng(5)
    first, second = Dense(3, 2, dtype=np.float64, rng=rng), Dense(2, 2, dtype=np.float64, rng=rng)
    twin = Dense(3, 2, dtype=np.float64, rng=0)
    twin.params = {name: p.copy() for name, p in first.params.items()}
    for layer in (first, second, twin):
        layer.grads = {name: rng.standard_normal(p.shape) for name, p in layer.params.items()}
    twin.grads = {name: g.copy() for name, g in first.grads.items()}
    together, alone = Adam([first, second]), Adam([twin])
    together.step()
    alone.step()
    del second.params["bias"]  # the second layer's parameters change between steps
    together.step()
    alone.step()
    for name in first.params:  # the first layer's moments carried over: as if unchanged
        assert np.array_equal(first.params[name], twin.params[name]), name
    assert len(together._flat[np.dtype(np.float64)].keys) == 3
