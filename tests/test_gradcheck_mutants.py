"""The gradient checker against a zoo of deliberately wrong layers (tests/mutants.py).

For every mutant: the check fails, the failures name exactly the tensor the bug
corrupts, and the real layer with the same parameters passes on the same input.
"""

from __future__ import annotations

import mutants as m
import numpy as np
import pytest

from labkit.gradcheck import OVERWROTE, check_layer, check_network
from labkit.layers import Convolutional, Dense, MaxPool, ReLU, Reshape
from labkit.losses import LOSSES
from labkit.network import Network


def conv(cls, input_shape, k, depth, bias="untied"):
    return lambda: cls(input_shape, k, depth, bias=bias, rng=7)


def dense(cls, n_in, n_out):
    return lambda: cls(n_in, n_out, rng=7)


# (id, mutant factory, input shape with batch, faulty tensor); a few shapes per mutant,
# batch >= 2 wherever the bug is about the batch.
CASES = [
    # conv: the kernel flip matters from k = 2 on
    ("conv-no-flip-k2", conv(m.ConvNoKernelFlip, (1, 4, 5), 2, 2), (2, 1, 4, 5), "input"),
    ("conv-no-flip-k3", conv(m.ConvNoKernelFlip, (2, 5, 6), 3, 3), (1, 2, 5, 6), "input"),
    (
        "conv-no-flip-tied",
        conv(m.ConvNoKernelFlip, (2, 6, 5), 3, 2, "tied"),
        (3, 2, 6, 5),
        "input",
    ),
    ("conv-dk-flipped-k2", conv(m.ConvKernelGradFlipped, (1, 4, 4), 2, 2), (2, 1, 4, 4), "kernels"),
    (
        "conv-dk-flipped-k3",
        conv(m.ConvKernelGradFlipped, (2, 6, 5), 3, 1, "tied"),
        (1, 2, 6, 5),
        "kernels",
    ),
    ("conv-no-bias-grad", conv(m.ConvMissingBiasGrad, (1, 4, 4), 2, 2), (2, 1, 4, 4), "biases"),
    (
        "conv-no-bias-grad-tied",
        conv(m.ConvMissingBiasGrad, (2, 5, 5), 3, 3, "tied"),
        (1, 2, 5, 5),
        "biases",
    ),
    ("conv-bias-sample0", conv(m.ConvBiasFirstSample, (1, 4, 4), 2, 2), (2, 1, 4, 4), "biases"),
    (
        "conv-bias-sample0-tied",
        conv(m.ConvBiasFirstSample, (2, 5, 4), 3, 2, "tied"),
        (3, 2, 5, 4),
        "biases",
    ),
    # OW == depth: a right-shaped gradient with wrong values; OW != depth: wrong shape
    (
        "conv-tied-axis-values",
        conv(m.ConvTiedBiasWrongAxis, (2, 5, 6), 3, 4, "tied"),
        (2, 2, 5, 6),
        "biases",
    ),
    (
        "conv-tied-axis-shape",
        conv(m.ConvTiedBiasWrongAxis, (1, 5, 5), 2, 2, "tied"),
        (2, 1, 5, 5),
        "biases",
    ),
    # dense
    ("dense-scaled", dense(m.DenseInputScaled, 4, 3), (3, 4), "input"),
    ("dense-scaled-column", dense(m.DenseInputScaled, 5, 5), (2, 5, 1), "input"),
    ("dense-scaled-batch1", dense(m.DenseInputScaled, 1, 6), (1, 1), "input"),
    ("dense-dW-T-square", dense(m.DenseTransposedWeightGrad, 4, 4), (3, 4), "weights"),
    ("dense-dW-T-square-col", dense(m.DenseTransposedWeightGrad, 3, 3), (2, 3, 1), "weights"),
    ("dense-dW-T-nonsquare", dense(m.DenseTransposedWeightGrad, 4, 3), (2, 4), "weights"),
    ("dense-W-not-WT", dense(m.DenseInputUsesWT, 4, 4), (3, 4), "input"),
    ("dense-W-not-WT-col", dense(m.DenseInputUsesWT, 6, 6), (1, 6, 1), "input"),
    ("dense-bias-axis-values", dense(m.DenseBiasWrongAxis, 4, 3), (3, 4), "bias"),
    ("dense-bias-axis-shape", dense(m.DenseBiasWrongAxis, 4, 3), (2, 4), "bias"),
    ("dense-stale-input", dense(m.DenseStaleInput, 4, 3), (3, 4), "weights"),
    ("dense-stale-input-b1", dense(m.DenseStaleInput, 5, 2), (1, 5), "weights"),
    # max pooling
    ("pool-off-by-one", lambda: m.MaxPoolOffByOne(2), (2, 2, 4, 4), "input"),
    ("pool-off-by-one-3", lambda: m.MaxPoolOffByOne(3), (1, 1, 6, 7), "input"),
    ("pool-off-by-one-overlap", lambda: m.MaxPoolOffByOne(3, 2), (2, 1, 7, 7), "input"),
    ("pool-whole-window", lambda: m.MaxPoolWholeWindow(2), (2, 2, 4, 4), "input"),
    ("pool-whole-window-overlap", lambda: m.MaxPoolWholeWindow(2, 1), (1, 2, 5, 4), "input"),
    ("pool-whole-window-sparse", lambda: m.MaxPoolWholeWindow(2, 3), (2, 1, 8, 8), "input"),
    # activations
    ("sigmoid-s(1+s)", m.SigmoidPrimePlus, (2, 3, 4), "input"),
    ("sigmoid-s(1+s)-flat", m.SigmoidPrimePlus, (3, 7), "input"),
    ("sigmoid-of-input", m.SigmoidPrimeOfInput, (2, 3, 4), "input"),
    ("sigmoid-of-input-flat", m.SigmoidPrimeOfInput, (1, 9), "input"),
    ("tanh-1-x2", m.TanhPrimeOfInput, (2, 3, 4), "input"),
    ("tanh-1-x2-flat", m.TanhPrimeOfInput, (4, 5), "input"),
    ("relu-passes-negative", m.ReLUPassesNegative, (2, 3, 4), "input"),
    ("relu-passes-negative-flat", m.ReLUPassesNegative, (3, 6), "input"),
    ("softmax-diagonal", m.SoftmaxDiagonalJacobian, (2, 5), "input"),
    ("softmax-diagonal-column", m.SoftmaxDiagonalJacobian, (3, 4, 1), "input"),
    ("softmax-diagonal-batch1", m.SoftmaxDiagonalJacobian, (1, 10), "input"),
    ("softmax-in-place", m.SoftmaxInPlaceAliasing, (2, 5), "input"),
    ("softmax-in-place-column", m.SoftmaxInPlaceAliasing, (3, 6, 1), "input"),
]


@pytest.mark.parametrize(
    ("factory", "shape", "faulty"),
    [pytest.param(f, s, t, id=i) for i, f, s, t in CASES],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_mutant_is_caught_and_blamed_on_the_right_tensor(factory, shape, faulty, seed):
    mutant = factory()
    assert m.FAULTY[type(mutant)] == faulty
    x = np.random.default_rng(100 + seed).standard_normal(shape)

    report = check_layer(mutant, x, seed=seed)
    assert report.passed is False
    assert m.failing_tensors(report) == {faulty}, report.table()

    twin = m.correct_twin(mutant)
    assert type(twin) is not type(mutant)
    good = check_layer(twin, x, seed=seed)
    assert good.passed is True, good.table()


def test_zoo_is_complete():
    """Every mutant in the zoo has a case above (and there are at least 14)."""
    covered = {type(factory()) for _, factory, _, _ in CASES}
    assert covered | {m.TanhInPlace} == set(m.FAULTY)
    assert len(m.FAULTY) >= 14
    for cls in m.FAULTY:
        assert cls.__doc__ and m.FAULTY[cls] in cls.__doc__, cls


@pytest.mark.parametrize(
    ("factory", "shape"),
    [
        (lambda: m.DenseInputScaled(4, 3, rng=7), (3, 4)),
        (lambda: m.ConvNoKernelFlip((1, 5, 5), 2, 2, rng=7), (2, 1, 5, 5)),
        (lambda: m.SoftmaxDiagonalJacobian(), (2, 6)),
        (lambda: m.MaxPoolWholeWindow(2), (2, 1, 4, 4)),
    ],
)
def test_fast_mode_catches_mutants_too(factory, shape):
    mutant = factory()
    x = np.random.default_rng(3).standard_normal(shape)
    report = check_layer(mutant, x, mode="fast")
    assert m.failing_tensors(report) == {m.FAULTY[type(mutant)]}
    assert check_layer(m.correct_twin(mutant), x, mode="fast").passed


def test_shape_mismatch_is_a_failure_on_weights_not_an_exception():
    report = check_layer(m.DenseTransposedWeightGrad(4, 3, rng=0), np.ones((2, 4)))
    (failure,) = report.failures
    assert failure.tensor == "weights"
    assert "shape" in failure.note and "(4, 3)" in failure.note and "(3, 4)" in failure.note
    assert "FAIL" in report.table()


def test_missing_bias_gradient_is_reported_as_unset():
    report = check_layer(m.ConvMissingBiasGrad((1, 4, 4), 2, 2, rng=0))
    (failure,) = report.failures
    assert failure.tensor == "biases"
    assert "unset" in failure.note


# -- the in-place bug ------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [m.TanhInPlace, m.SoftmaxInPlaceAliasing])
def test_in_place_mutants_really_clobber_their_callers_gradient(cls):
    """Both return the very array they were given, overwritten; TanhInPlace's values are
    right (caught by the overwrite check below), SoftmaxInPlaceAliasing's are not (caught above)."""
    layer = cls()
    x = np.random.default_rng(0).standard_normal((2, 5))
    layer.forward(x)
    g = np.random.default_rng(1).standard_normal((2, 5))
    original = g.copy()
    dx = layer.backward(g)
    assert dx is g
    assert not np.array_equal(g, original)


@pytest.mark.parametrize("shape", [(2, 5), (3, 2, 4)])
def test_in_place_mutant_is_caught(shape):
    x = np.random.default_rng(0).standard_normal(shape)
    report = check_layer(m.TanhInPlace(), x)
    assert report.passed is False
    assert m.failing_tensors(report) == {"input"}
    assert report["input"].note == OVERWROTE  # its values are right: the overwrite is the fault


# -- the loss mutant: a dropped batch average ----------------------------------------------


def small_network(rng):
    return Network(
        [
            Convolutional((1, 5, 5), 2, 2, rng=rng),
            ReLU(),
            MaxPool(2),
            Reshape((2, 2, 2), (8,)),
            Dense(8, 3, rng=rng),
        ]
    )


@pytest.mark.parametrize("batch", [2, 3])
@pytest.mark.parametrize("mode", ["fast", "full"])
def test_loss_without_batch_average_fails_every_tensor(batch, mode):
    rng = np.random.default_rng(batch)
    network = small_network(rng)
    x = rng.standard_normal((batch, 1, 5, 5))
    y = np.eye(3)[rng.integers(0, 3, batch)]

    report = check_network(network, x, y, loss=m.NO_MEAN_LOSS, mode=mode, max_elements=10)
    assert report.passed is False
    every = {(c.layer, c.tensor) for c in report.checks}
    assert {(c.layer, c.tensor) for c in report.failures} == every
    assert len(every) == 5  # the input, kernels, biases, weights, bias

    good = check_network(network, x, y, loss=LOSSES["softmax_cross_entropy"], mode=mode)
    assert good.passed, good.table()


@pytest.mark.parametrize(
    ("faulty_layer", "tensor"),
    [
        (lambda rng: m.ConvBiasFirstSample((1, 5, 5), 2, 2, rng=rng), "biases"),
        (lambda rng: m.ConvKernelGradFlipped((1, 5, 5), 2, 2, rng=rng), "kernels"),
    ],
)
def test_network_check_blames_the_faulty_layer(faulty_layer, tensor):
    rng = np.random.default_rng(5)
    network = small_network(rng)
    network.layers[0] = faulty_layer(rng)
    network.layers[0].name = "conv"
    x = rng.standard_normal((3, 1, 5, 5))
    y = np.eye(3)[[0, 1, 2]]
    report = check_network(network, x, y, mode="full")
    assert {(c.layer, c.tensor) for c in report.failures} == {("conv", tensor)}
