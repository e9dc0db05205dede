"""The TensorFlow oracle: every layer and loss against the same op in TF, on float64 values.

Correct layers agree with TensorFlow to rounding; each mutant of tests/mutants.py is
blamed on the tensor it corrupts; the caller's layer is never touched; missing TF and
unsupported layers are one-line errors; ``import labkit.oracle`` stays TF-free.
"""

from __future__ import annotations

import re
import subprocess
import sys

import mutants as m
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("tensorflow")

from labkit.cli import main  # noqa: E402
from labkit.gradcheck import OVERWROTE, GradcheckError  # noqa: E402
from labkit.layers import (  # noqa: E402
    Activation,
    Convolutional,
    Dense,
    Flatten,
    Layer,
    MaxPool,
    ReLU,
    Reshape,
    Sigmoid,
    Softmax,
    Tanh,
)
from labkit.losses import LOSSES, Loss, softmax_cross_entropy  # noqa: E402
from labkit.models import lenet  # noqa: E402
from labkit.oracle import (  # noqa: E402
    MISSING,
    check_layer_against_tensorflow,
    check_loss_against_tensorflow,
)

pytestmark = pytest.mark.tensorflow

FEW = settings(max_examples=12, deadline=None)


def randomized(layer: Layer, seed: int) -> Layer:
    """``layer`` with every parameter (biases too) drawn from N(0, 1)."""
    rng = np.random.default_rng(seed)
    for value in layer.params.values():
        value[...] = rng.standard_normal(value.shape)
    return layer


def away_from_zero(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Normal draws at least 0.05 from 0 (no ReLU kink); continuous, so no max-pool ties."""
    x = np.random.default_rng(seed).standard_normal(shape)
    return np.where(np.abs(x) < 0.05, x + np.copysign(0.05, x), x)


def assert_agrees(layer: Layer, x: np.ndarray, seed: int = 0) -> None:
    """The oracle passes and reports output, input and every parameter in tensorflow mode."""
    report = check_layer_against_tensorflow(layer, x, seed=seed)
    assert report.passed, report.table()
    assert [c.tensor for c in report.checks] == ["output", "input", *layer.params]
    for check in report.checks:
        assert check.mode == "tensorflow"
        assert check.checked == int(np.prod(check.shape))


# -- every layer type agrees with TensorFlow ---------------------------------------------------


@FEW
@given(
    channels=st.integers(1, 3),
    kernel=st.integers(1, 4),
    extra=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    depth=st.integers(1, 4),
    bias=st.sampled_from(["untied", "tied"]),
    batch=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_convolutional_agrees(channels, kernel, extra, depth, bias, batch, seed):
    shape = (channels, kernel + extra[0], kernel + extra[1])
    layer = randomized(Convolutional(shape, kernel, depth, bias=bias, dtype=np.float64), seed)
    assert_agrees(layer, away_from_zero((batch, *shape), seed + 1), seed)


@pytest.mark.parametrize("bias", ["untied", "tied"])
def test_convolutional_agrees_in_both_bias_modes_in_float32(bias):
    layer = randomized(Convolutional((2, 6, 5), 3, 4, bias=bias, rng=0), 1)
    assert_agrees(layer, away_from_zero((2, 2, 6, 5), 2))


@FEW
@given(
    sizes=st.tuples(st.integers(1, 8), st.integers(1, 8)),
    batch=st.integers(1, 4),
    column=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_dense_agrees(sizes, batch, column, seed):
    layer = randomized(Dense(*sizes, dtype=np.float64), seed)
    shape = (batch, sizes[0], 1) if column else (batch, sizes[0])
    assert_agrees(layer, away_from_zero(shape, seed + 1), seed)


@FEW
@given(
    pool=st.integers(1, 3),
    stride=st.integers(1, 4),
    extra=st.tuples(st.integers(0, 4), st.integers(0, 4)),
    channels=st.integers(1, 3),
    batch=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_max_pool_agrees(pool, stride, extra, channels, batch, seed):
    shape = (batch, channels, pool + extra[0], pool + extra[1])
    assert_agrees(MaxPool(pool, stride), away_from_zero(shape, seed), seed)


@pytest.mark.parametrize(("pool", "stride"), [(3, 2), (2, 1), (2, 3), (3, 1)])
def test_max_pool_agrees_when_stride_differs_from_pool(pool, stride):
    assert_agrees(MaxPool(pool, stride), away_from_zero((2, 3, 9, 8), pool * 10 + stride))


@pytest.mark.parametrize("cls", [Sigmoid, Tanh, ReLU, Softmax])
@settings(max_examples=5, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple),
    batch=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_activations_agree(cls, shape, batch, seed):
    assert_agrees(cls(), away_from_zero((batch, *shape), seed), seed)


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (Reshape((2, 3, 4), (24,)), (3, 2, 3, 4)),
        (Reshape((6,), (2, 3, 1)), (2, 6)),
        (Flatten(), (2, 3, 2, 2)),
        (Flatten(), (1, 5)),
    ],
    ids=["reshape-flat", "reshape-column", "flatten-4d", "flatten-2d"],
)
def test_shape_layers_agree(layer, shape):
    assert_agrees(layer, away_from_zero(shape, 0))


# -- losses ---------------------------------------------------------------------------------


def loss_inputs(name: str, batch: int, classes: int, seed: int):
    """One-hot targets and predictions in the loss's domain (probabilities for BCE)."""
    rng = np.random.default_rng(seed)
    y_true = np.eye(classes)[rng.integers(0, classes, batch)]
    if name == "binary_cross_entropy":
        return y_true, rng.uniform(0.02, 0.98, (batch, classes))
    return y_true, 3 * rng.standard_normal((batch, classes))


@settings(max_examples=8, deadline=None)
@given(
    name=st.sampled_from(["mse", "binary_cross_entropy", "softmax_cross_entropy"]),
    batch=st.integers(1, 5),
    classes=st.integers(2, 10),
    column=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_losses_agree(name, batch, classes, column, seed):
    y_true, y_pred = loss_inputs(name, batch, classes, seed)
    if column:  # the tutorial's (N, n, 1) layout
        y_true, y_pred = y_true[..., None], y_pred[..., None]
    report = check_loss_against_tensorflow(name, y_true, y_pred)
    assert report.passed, report.table()
    assert [c.tensor for c in report.checks] == ["loss", "input"]
    assert report["input"].shape == y_pred.shape and report["loss"].shape == ()


def test_loss_derivative_without_batch_mean_fails_on_input(monkeypatch):
    wrong = Loss("softmax_cross_entropy", softmax_cross_entropy, m.NO_MEAN_LOSS.prime)
    monkeypatch.setitem(LOSSES, "softmax_cross_entropy", wrong)
    y_true, y_pred = loss_inputs("softmax_cross_entropy", 3, 4, 0)
    report = check_loss_against_tensorflow("softmax_cross_entropy", y_true, y_pred)
    assert m.failing_tensors(report) == {"input"}, report.table()


def test_unknown_loss_is_a_one_line_error():
    with pytest.raises(GradcheckError, match=r"^hinge: no TensorFlow counterpart") as info:
        check_loss_against_tensorflow("hinge", np.ones((2, 3)), np.ones((2, 3)))
    assert "\n" not in str(info.value)


# -- mutants fail, blamed on the right tensor ---------------------------------------------------


class DenseWeightGradScaled(Dense):
    """Weight gradient 1% too large. Corrupts ``weights``."""

    def backward(self, output_gradient, learning_rate=None):
        dx = super().backward(output_gradient, None)
        self.grads["weights"] = self.grads["weights"] * 1.01
        return dx


class DenseForwardShifted(Dense):
    """Forward adds 1e-6 to every output; backward is right. Corrupts ``output`` only."""

    def forward(self, input):
        return super().forward(input) + 1e-6


MUTANTS = [
    (lambda: m.ConvNoKernelFlip((1, 4, 5), 2, 2, rng=7), (2, 1, 4, 5)),
    (lambda: m.ConvKernelGradFlipped((1, 4, 4), 2, 2, rng=7), (2, 1, 4, 4)),
    (lambda: m.ConvMissingBiasGrad((2, 5, 5), 3, 3, bias="tied", rng=7), (1, 2, 5, 5)),
    (lambda: m.ConvBiasFirstSample((1, 4, 4), 2, 2, rng=7), (2, 1, 4, 4)),
    (lambda: m.ConvTiedBiasWrongAxis((2, 5, 6), 3, 4, bias="tied", rng=7), (2, 2, 5, 6)),
    (lambda: m.DenseInputScaled(5, 5, rng=7), (2, 5, 1)),
    (lambda: m.DenseTransposedWeightGrad(4, 3, rng=7), (2, 4)),
    (lambda: m.DenseInputUsesWT(4, 4, rng=7), (3, 4)),
    (lambda: m.DenseBiasWrongAxis(4, 3, rng=7), (3, 4)),
    (lambda: m.DenseStaleInput(4, 3, rng=7), (3, 4)),
    (lambda: m.MaxPoolOffByOne(3, 2), (2, 1, 7, 7)),
    (lambda: m.MaxPoolWholeWindow(2, 1), (1, 2, 5, 4)),
    (m.SigmoidPrimePlus, (2, 3, 4)),
    (m.SigmoidPrimeOfInput, (2, 3, 4)),
    (m.TanhPrimeOfInput, (4, 5)),
    (m.ReLUPassesNegative, (2, 3, 4)),
    (m.SoftmaxDiagonalJacobian, (3, 4, 1)),
    (m.SoftmaxInPlaceAliasing, (2, 5)),
    (m.TanhInPlace, (2, 5)),
]


def test_every_mutant_of_the_zoo_is_covered():
    assert {type(factory()) for factory, _ in MUTANTS} == set(m.FAULTY)


@pytest.mark.parametrize(
    ("factory", "shape"),
    [pytest.param(f, s, id=type(f()).__name__) for f, s in MUTANTS],
)
def test_mutant_fails_on_its_faulty_tensor(factory, shape):
    mutant = factory()
    x = away_from_zero(shape, 3)
    report = check_layer_against_tensorflow(mutant, x)
    assert report.passed is False
    assert m.failing_tensors(report) == {m.FAULTY[type(mutant)]}, report.table()
    if isinstance(mutant, m.TanhInPlace):  # its values are right: the overwrite is the fault
        assert report["input"].note == OVERWROTE
    assert check_layer_against_tensorflow(m.correct_twin(mutant), x).passed


def test_scaled_weight_gradient_fails_on_weights_with_both_values_shown():
    report = check_layer_against_tensorflow(randomized(DenseWeightGradScaled(4, 3), 0), np.eye(4))
    (failure,) = report.failures
    assert failure.tensor == "weights" and failure.mode == "tensorflow"
    assert failure.failures == 12 and failure.checked == 12
    assert failure.analytic == pytest.approx(1.01 * failure.numeric, rel=1e-12)
    assert failure.max_rel_error == pytest.approx(0.01 / 1.01, rel=1e-9)
    assert "FAIL" in report.table() and "tensorflow" in report.table()


def test_wrong_forward_fails_on_output_only():
    report = check_layer_against_tensorflow(DenseForwardShifted(3, 2, rng=0), np.ones((2, 3)))
    assert m.failing_tensors(report) == {"output"}, report.table()
    assert report["output"].max_abs_error == pytest.approx(1e-6, rel=1e-6)


# -- the caller's layer and input are never touched --------------------------------------------


def test_callers_layer_and_input_are_left_bit_identical():
    layer = randomized(Convolutional((2, 5, 5), 2, 3, rng=0), 1)  # float32
    params = {key: value.copy() for key, value in layer.params.items()}
    arrays = dict(layer.params)
    x = away_from_zero((2, 2, 5, 5), 4)
    x_before = x.copy()

    assert check_layer_against_tensorflow(layer, x).passed

    assert layer.grads == {} and layer.input is None
    for key, value in layer.params.items():
        assert value is arrays[key] and value.dtype == np.float32
        assert value.tobytes() == params[key].tobytes()
    assert x.tobytes() == x_before.tobytes()


# -- errors ---------------------------------------------------------------------------------


class Doubler(Layer):
    """A user layer with no TensorFlow op registered."""

    def forward(self, input):
        return 2 * input

    def backward(self, output_gradient, learning_rate=None):
        return 2 * output_gradient


@pytest.mark.parametrize(
    ("layer", "kind"),
    [
        (Activation(np.tanh, lambda x: 1 - np.tanh(x) ** 2), "Activation"),
        (Doubler(), "Doubler"),
    ],
)
def test_unsupported_layer_is_a_one_line_error(layer, kind):
    layer.name = "mine"
    with pytest.raises(GradcheckError) as info:
        check_layer_against_tensorflow(layer, np.ones((2, 3)))
    assert str(info.value) == f"mine: no TensorFlow counterpart for {kind}"


def test_missing_tensorflow_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` now fails
    with pytest.raises(GradcheckError) as info:
        check_layer_against_tensorflow(Dense(3, 2, rng=0), np.ones((2, 3)))
    assert str(info.value) == MISSING
    with pytest.raises(GradcheckError, match="^the TensorFlow oracle needs tensorflow"):
        check_loss_against_tensorflow("mse", np.ones((2, 3)), np.zeros((2, 3)))


def test_wrong_input_shape_is_a_one_line_error():
    with pytest.raises(GradcheckError, match=r"^Dense.*expected input of shape") as info:
        check_layer_against_tensorflow(Dense(3, 2, rng=0), np.ones((2, 4)))
    assert "\n" not in str(info.value)


def test_importing_the_oracle_does_not_import_tensorflow():
    code = "import sys, labkit.oracle; print('tensorflow' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "False"


# -- end to end ------------------------------------------------------------------------------


def test_cli_gradcheck_with_the_tensorflow_oracle(capsys):
    assert main(["gradcheck", "--fast", "--oracle", "tensorflow"]) == 0
    out = capsys.readouterr().out
    rows = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines()]
    oracle_rows = [row for row in rows if len(row) > 3 and row[3] == "tensorflow"]
    names = [layer.name for layer in lenet().layers]
    assert {row[0] for row in oracle_rows} == set(names)
    assert all(row[-1] == "ok" for row in oracle_rows)
    for name, layer in zip(names, lenet().layers, strict=True):
        tensors = [row[1] for row in oracle_rows if row[0] == name]
        assert tensors == ["output", "input", *layer.params]
    assert "all passed" in out
