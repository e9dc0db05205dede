"""The gradient checker against the harder mutants of tests/mutants_power.py.

Each wrong layer must fail, on exactly the tensor its bug corrupts and with the note that
says why (gradients that accumulate, an input gradient that depends on the learning
rate, an update that is not ``-lr * grad``, a forward that is not deterministic, a
float32 path that is wrong), while the real layer with the same parameters passes on the
same input. The awkward but correct layers must pass, without a raw exception. The notes
are imported inside the tests, so this file collects before the checker exports them.

The tests at the end ("the bugs are real") hold the mutants themselves to their
docstrings, independently of the checker.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from typing import NamedTuple

import mutants_power as m
import numpy as np
import pytest

from labkit.gradcheck import GradcheckError, check_layer
from labkit.layers import Dense, MaxPool


def failed_tensors(report) -> set[str]:
    """Names of the tensors some check of which failed (one name for a float64 and a
    float32 row of the same tensor)."""
    return {check.tensor for check in report.failures}


def note(name: str) -> str:
    """A note text the checker exports (``ACCUMULATES``, ``ORDER``, ...), imported here so
    the module collects before the checker has it."""
    import labkit.gradcheck

    return getattr(labkit.gradcheck, name)


def failing_notes(report, tensor: str) -> str:
    """Every note of the failing checks of ``tensor``, joined."""
    return "; ".join(c.note for c in report.failures if c.tensor == tensor)


def normal(shape, seed: int, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(100 + seed).standard_normal(shape) * scale


def conv(cls, input_shape, k, depth, bias="untied"):
    return lambda: cls(input_shape, k, depth, bias=bias, rng=7)


def dense(cls, n_in, n_out, **kwargs):
    return lambda: cls(n_in, n_out, rng=7, **kwargs)


WEIGHTS = ({"weights"}, {"weights", "bias"})  # a bug in every parameter's update or sum


class Case(NamedTuple):
    id: str
    factory: Callable
    shape: tuple[int, ...]
    note: str | None = None  # the name of the note the failing check must hold
    allowed: tuple[set[str], ...] | None = None  # default: ({FAULTY tensor},)
    twin: Callable = m.correct_twin


def centering_twin(_mutant):
    return m.BatchCentering()


CASES = [
    Case("conv-one-off", conv(m.ConvKernelOneElementOff, (1, 4, 5), 2, 2), (2, 1, 4, 5)),
    Case(
        "conv-one-off-tied",
        conv(m.ConvKernelOneElementOff, (2, 5, 5), 3, 3, "tied"),
        (3, 2, 5, 5),
    ),
    Case("dense-weights-scaled", dense(m.DenseWeightsScaled, 4, 3), (3, 4)),
    Case("dense-weights-scaled-col", dense(m.DenseWeightsScaled, 5, 5), (2, 5, 1)),
    Case("dense-accumulates", dense(m.DenseAccumulatesGrads, 4, 3), (3, 4), "ACCUMULATES", WEIGHTS),
    Case(
        "dense-accumulates-col",
        dense(m.DenseAccumulatesGrads, 5, 5),
        (2, 5, 1),
        "ACCUMULATES",
        WEIGHTS,
    ),
    Case(
        "conv-private-sum",
        conv(m.ConvPrivateAccumulator, (1, 4, 5), 2, 2),
        (2, 1, 4, 5),
        "ACCUMULATES",
    ),
    Case(
        "conv-private-sum-tied",
        conv(m.ConvPrivateAccumulator, (2, 5, 5), 3, 3, "tied"),
        (3, 2, 5, 5),
        "ACCUMULATES",
    ),
    Case("dense-update-first", dense(m.DenseUpdatesBeforeInputGradient, 4, 3), (3, 4), "ORDER"),
    Case(
        "dense-update-first-col",
        dense(m.DenseUpdatesBeforeInputGradient, 5, 5),
        (2, 5, 1),
        "ORDER",
    ),
    Case(
        "dense-update-no-lr",
        dense(m.DenseUpdateForgetsLearningRate, 4, 3),
        (3, 4),
        "BAD_UPDATE",
        WEIGHTS,
    ),
    Case(
        "dense-update-no-lr-col",
        dense(m.DenseUpdateForgetsLearningRate, 5, 5),
        (2, 5, 1),
        "BAD_UPDATE",
        WEIGHTS,
    ),
    # 64 and 60 outputs: two masks agree everywhere with probability 0.82**60 < 1e-5
    Case("noisy-dense", dense(m.NoisyDense, 8, 16), (4, 8), "NOT_DETERMINISTIC"),
    Case("noisy-dense-col", dense(m.NoisyDense, 6, 20), (3, 6, 1), "NOT_DETERMINISTIC"),
    Case("centering-no-mean-grad", m.BatchCenteringNoMeanGrad, (3, 4), twin=centering_twin),
    Case("centering-no-mean-grad-2d", m.BatchCenteringNoMeanGrad, (2, 2, 3), twin=centering_twin),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize("seed", [0, 1])
def test_mutant_fails_on_its_tensor_with_its_note(case, seed):
    mutant = case.factory()
    twin = case.twin(mutant)  # before the check: it must not see the mutant's state
    assert type(twin) is not type(mutant)
    x = normal(case.shape, seed)

    report = check_layer(mutant, x, seed=seed)
    assert report.passed is False
    allowed = case.allowed or ({m.faulty(mutant)},)
    assert failed_tensors(report) in allowed, report.table()
    if case.note is not None:
        assert note(case.note) in failing_notes(report, m.faulty(mutant)), report.table()

    good = check_layer(twin, x, seed=seed)
    assert good.passed is True, good.table()


@pytest.mark.parametrize("delta", [1e-2, 1e-4, 1e-6])
def test_one_kernel_element_off_is_caught_at_every_delta(delta):
    mutant = m.kernel_one_element_off(delta)((2, 5, 4), 2, 3, rng=3)
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 4))  # default-like inputs
    report = check_layer(mutant, x)
    assert failed_tensors(report) == {"kernels"}, report.table()
    assert check_layer(m.correct_twin(mutant), x).passed


@pytest.mark.parametrize("scale", [1e-6, 1e5])
@pytest.mark.parametrize(("n_in", "n_out", "shape"), [(4, 3, (3, 4)), (5, 5, (2, 5, 1))])
@pytest.mark.parametrize("seed", [0, 1])
def test_input_element_off_is_caught_on_tiny_and_large_inputs(scale, n_in, n_out, shape, seed):
    mutant = m.DenseInputOneElementOff(n_in, n_out, rng=7)
    twin = m.correct_twin(mutant)
    x = normal(shape, seed, scale)
    report = check_layer(mutant, x, seed=seed)
    assert report.passed is False
    assert failed_tensors(report) == {"input"}, report.table()
    good = check_layer(twin, x, seed=seed)
    assert good.passed is True, good.table()


@pytest.mark.parametrize(("n_in", "n_out", "shape"), [(8, 6, (4, 8)), (6, 6, (3, 6, 1))])
@pytest.mark.parametrize("seed", [0, 1])
def test_float16_shortcut_fails_the_float32_input_check(n_in, n_out, shape, seed):
    mutant = m.DenseFloat16Input(n_in, n_out, dtype=np.float32, rng=7)
    twin = m.correct_twin(mutant)
    x = normal(shape, seed)
    report = check_layer(mutant, x, seed=seed)
    assert report.passed is False
    assert failed_tensors(report) == {"input"}, report.table()
    assert any(c.tensor == "input" and c.dtype == "float32" for c in report.failures)
    assert all(c.passed for c in report.checks if c.dtype == "float64"), report.table()
    good = check_layer(twin, x, seed=seed)
    assert good.passed is True, good.table()


def test_a_float32_layer_is_also_checked_in_float32():
    x = normal((3, 4), 0)
    report = check_layer(Dense(4, 3, dtype=np.float32, rng=0), x)
    assert any(c.dtype == "float32" for c in report.checks), report.table()
    assert {c.dtype for c in report.checks} <= {"float64", "float32"}
    assert report.passed, report.table()
    float64 = check_layer(Dense(4, 3, dtype=np.float64, rng=0), x)
    assert {c.dtype for c in float64.checks} == {"float64"}


# -- max-pool ties -----------------------------------------------------------------------


def integer_input(shape, seed):
    """Values in {-1, 0, 1}: most windows hold several equal maxima."""
    return np.random.default_rng(seed).integers(-1, 2, shape).astype(np.float64)


def two_way_tie(shape, seed):
    """Continuous values, except that the first window of every channel has exactly two
    equal maxima (its first two elements)."""
    x = normal(shape, seed)
    x[:, :, 0, 0] = x[:, :, 0, 1] = np.abs(x).max() + 1
    return x


def has_tie(pool: MaxPool, x: np.ndarray) -> bool:
    """Whether some window of ``x`` holds its maximum more than once."""
    p = pool.pool_size
    out = pool.forward(x)
    oh, ow = out.shape[2:]
    hits = sum(
        x[:, :, pool._offset(a, oh), pool._offset(b, ow)] == out for a in range(p) for b in range(p)
    )
    return bool((hits > 1).any())


@pytest.mark.parametrize("make_input", [integer_input, two_way_tie])
@pytest.mark.parametrize(("pool_size", "shape"), [(2, (2, 2, 4, 4)), (3, (1, 2, 6, 6))])
@pytest.mark.parametrize("seed", [0, 1])
def test_gradient_to_all_ties_is_caught_and_maxpool_passes_on_ties(
    make_input, pool_size, shape, seed
):
    mutant = m.MaxPoolGradientToAllTies(pool_size)
    x = make_input(shape, seed)
    assert has_tie(MaxPool(pool_size), x)
    report = check_layer(mutant, x, seed=seed)
    assert report.passed is False
    assert failed_tensors(report) == {"input"}, report.table()
    good = check_layer(MaxPool(pool_size), x, seed=seed)
    assert good.passed is True, good.table()


# -- the user's own crash ----------------------------------------------------------------


def typo_line() -> int:
    lines, start = inspect.getsourcelines(m.DenseTypoInBackward.backward)
    return start + next(i for i, text in enumerate(lines) if '"weigths"' in text)


@pytest.mark.parametrize("shape", [(2, 4), (3, 4, 1)])
def test_crash_in_backward_is_one_line_naming_layer_error_and_line(shape):
    layer = m.DenseTypoInBackward(4, 3, rng=0)
    with pytest.raises(GradcheckError) as caught:
        check_layer(layer, normal(shape, 0))
    message = str(caught.value)
    assert "\n" not in message
    assert "DenseTypoInBackward" in message
    assert "KeyError" in message
    assert f"mutants_power.py:{typo_line()}" in message, message


# -- correct layers that must pass -------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "shape"),
    [
        (conv(m.ConvPreallocatedGrads, (1, 4, 5), 2, 2), (2, 1, 4, 5)),
        (conv(m.ConvPreallocatedGrads, (2, 5, 5), 3, 3, "tied"), (3, 2, 5, 5)),
        (conv(m.ConvPreallocatedGrads, (1, 5, 5), 2, 2, "tied"), (1, 1, 5, 5)),
    ],
    ids=["untied", "tied", "tied-one-channel-batch1"],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_preallocated_gradients_pass(factory, shape, seed):
    report = check_layer(factory(), normal(shape, seed), seed=seed)
    assert report.passed is True, report.table()


@pytest.mark.parametrize("batch", [1, 2, 3])
@pytest.mark.parametrize("sample", [(4,), (2, 3)])
def test_batch_centering_passes(batch, sample):
    report = check_layer(m.BatchCentering(), normal((batch, *sample), batch))
    assert report.passed is True, report.table()


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_batch_centering_without_the_mean_gradient_fails(batch):
    report = check_layer(m.BatchCenteringNoMeanGrad(), normal((batch, 4), batch))
    assert failed_tensors(report) == {"input"}, report.table()


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("classes", [3, 5])
def test_fused_softmax_cross_entropy_passes(batch, classes):
    rng = np.random.default_rng(batch * classes)
    labels = np.eye(classes)[rng.integers(0, classes, batch)]
    layer = m.FusedSoftmaxCrossEntropy(labels)
    report = check_layer(layer, rng.standard_normal((batch, classes)))
    assert report.passed is True, report.table()


# -- the bugs are real (the mutants against their twins, no checker) ---------------------


def run(layer, x, seed=5, learning_rate=None, times=1):
    """forward(x) then backward(R) (R in the output's dtype) ``times`` times; the last
    input gradient and grads."""
    for _ in range(times):
        out = layer.forward(x)
        r = np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
        dx = layer.backward(r, learning_rate)
    return dx, {k: np.array(v) for k, v in layer.grads.items()}


def test_the_power_zoo_is_complete():
    covered = {type(c.factory()) for c in CASES} | {
        m.DenseInputOneElementOff,
        m.DenseFloat16Input,
        m.MaxPoolGradientToAllTies,
    }
    assert covered == set(m.FAULTY)
    for cls, tensor in m.FAULTY.items():
        assert cls.__doc__ and tensor in cls.__doc__ and "CORRECT" not in cls.__doc__, cls
    for cls in m.CORRECT + m.RAISES:
        assert cls not in m.FAULTY and cls.__doc__, cls
    assert all(cls.__doc__.startswith("CORRECT") for cls in m.CORRECT)


def test_one_element_off_changes_only_that_element():
    mutant = m.kernel_one_element_off(1e-3)((2, 4, 4), 2, 2, dtype=np.float64, rng=0)
    x = normal((2, 2, 4, 4), 0)
    dx, grads = run(mutant, x)
    twin_dx, twin_grads = run(m.correct_twin(mutant), x)
    np.testing.assert_array_equal(dx, twin_dx)
    ratio = grads["kernels"] / twin_grads["kernels"]
    assert ratio[0, 0, 0, 0] == pytest.approx(1 + 1e-3, rel=1e-12)
    np.testing.assert_array_equal(ratio.reshape(-1)[1:], 1.0)


@pytest.mark.parametrize(
    "factory",
    [
        lambda: m.DenseAccumulatesGrads(4, 3, dtype=np.float64, rng=0),
        lambda: m.ConvPrivateAccumulator((1, 4, 4), 2, 2, dtype=np.float64, rng=0),
    ],
    ids=["dense", "conv"],
)
def test_accumulators_are_right_once_and_double_on_the_second_call(factory):
    mutant = factory()
    x = normal((3, 4) if isinstance(mutant, Dense) else (3, 1, 4, 4), 0)
    twin = m.correct_twin(mutant)
    _, twin_grads = run(twin, x)
    _, once = run(copy.deepcopy(mutant), x)
    _, twice = run(mutant, x, times=2)
    name = m.faulty(mutant)
    np.testing.assert_allclose(once[name], twin_grads[name], rtol=1e-12)
    np.testing.assert_allclose(twice[name], 2 * twin_grads[name], rtol=1e-12)


def test_update_first_is_right_without_a_learning_rate_only():
    mutant = m.DenseUpdatesBeforeInputGradient(4, 3, dtype=np.float64, rng=0)
    twin = m.correct_twin(mutant)
    x = normal((3, 4), 0)
    np.testing.assert_array_equal(run(copy.deepcopy(mutant), x)[0], run(twin, x)[0])
    dx, _ = run(mutant, x, learning_rate=0.1)
    twin_dx, _ = run(twin, x, learning_rate=0.1)
    assert not np.allclose(dx, twin_dx)
    np.testing.assert_allclose(mutant.weights, twin.weights, rtol=1e-12)  # the update is right


def test_update_without_lr_differs_from_sgd():
    mutant = m.DenseUpdateForgetsLearningRate(4, 3, dtype=np.float64, rng=0)
    twin = m.correct_twin(mutant)
    x = normal((3, 4), 0)
    _, grads = run(mutant, x, learning_rate=0.1)
    _, twin_grads = run(twin, x, learning_rate=0.1)
    np.testing.assert_allclose(grads["weights"], twin_grads["weights"], rtol=1e-12)
    assert not np.allclose(mutant.weights, twin.weights)
    assert not np.allclose(mutant.bias, twin.bias)


def test_noisy_dense_forward_differs_between_calls():
    layer = m.NoisyDense(8, 16, dtype=np.float64, rng=0)
    x = normal((4, 8), 0)
    assert not np.array_equal(layer.forward(x), layer.forward(x))


def test_float16_shortcut_is_wrong_in_float32_only():
    mutant = m.DenseFloat16Input(8, 6, dtype=np.float32, rng=0)
    x = normal((4, 8), 0).astype(np.float32)
    dx = run(mutant, x)[0]
    twin_dx = run(m.correct_twin(mutant), x)[0]
    assert dx.dtype == np.float32 and dx.shape == x.shape
    assert np.abs(dx - twin_dx).max() > 1e-4 * np.abs(twin_dx).max()
    mutant64 = m.DenseFloat16Input(8, 6, dtype=np.float64, rng=0)
    x64 = x.astype(np.float64)
    np.testing.assert_array_equal(run(mutant64, x64)[0], run(m.correct_twin(mutant64), x64)[0])


def test_all_ties_is_maxpool_without_ties_and_doubles_a_two_way_tie():
    x = normal((2, 2, 4, 4), 0)
    mutant, pool = m.MaxPoolGradientToAllTies(2), MaxPool(2)
    np.testing.assert_array_equal(run(mutant, x)[0], run(pool, x)[0])
    tied = two_way_tie((2, 2, 4, 4), 0)
    dx, pool_dx = run(mutant, tied)[0], run(pool, tied)[0]
    window = np.s_[:, :, :2, :2]
    np.testing.assert_allclose(dx[window].sum(axis=(2, 3)), 2 * pool_dx[window].sum(axis=(2, 3)))


def test_typo_raises_key_error_in_backward():
    layer = m.DenseTypoInBackward(4, 3, rng=0)
    layer.forward(normal((2, 4), 0))
    with pytest.raises(KeyError, match="weigths"):
        layer.backward(np.ones((2, 3)))
