"""check_layer on the tutorial's own layers (tests/tutorial_mutants.py): one sample,
parameters as attributes, SGD inside backward(output_gradient, learning_rate).

Every mutant fails on exactly the tensor its bug corrupts while its correct twin passes;
the correct layers raise no false alarm over random shapes; the caller's layer is left
bit-identical; a crash or a non-finite forward is one line naming the layer.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
import tutorial_mutants as t
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit import gradcheck_tutorial
from labkit.errors import LabkitError
from labkit.gradcheck import OVERWROTE, GradcheckError, check_layer
from labkit.gradcheck_tutorial import LEARNING_RATE, ORDER, is_tutorial_layer
from labkit.layers import Dense as LabkitDense
from labkit.layers import ReLU as LabkitReLU


def sample(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def dense(cls, n_in, n_out, seed=7):
    return lambda: t.seeded(lambda: cls(n_in, n_out), seed)


def conv(cls, input_shape, k, depth, seed=7):
    return lambda: t.seeded(lambda: cls(input_shape, k, depth), seed)


# (id, mutant factory, x: one sample, faulty tensor)
CASES = [
    ("dense-after-update", dense(t.DenseInputAfterUpdate, 4, 3), (4, 1), "input"),
    ("dense-after-update-1x1", dense(t.DenseInputAfterUpdate, 1, 1), (1, 1), "input"),
    ("dense-after-update-wide", dense(t.DenseInputAfterUpdate, 2, 6), (2, 1), "input"),
    ("dense-dW-transposed", dense(t.DenseWeightsGradTransposed, 4, 4), (4, 1), "weights"),
    ("dense-dW-transposed-3", dense(t.DenseWeightsGradTransposed, 3, 3), (3, 1), "weights"),
    ("dense-no-lr", dense(t.DenseWeightsNoLearningRate, 4, 3), (4, 1), "weights"),
    ("dense-no-lr-1x1", dense(t.DenseWeightsNoLearningRate, 1, 1), (1, 1), "weights"),
    ("dense-bias-transposed", dense(t.DenseBiasUpdateTransposed, 4, 3), (4, 1), "bias"),
    ("conv-no-bias-update", conv(t.ConvMissingBiasUpdate, (1, 4, 4), 2, 2), (1, 4, 4), "biases"),
    ("conv-no-bias-update-k3", conv(t.ConvMissingBiasUpdate, (2, 5, 6), 3, 1), (2, 5, 6), "biases"),
    ("conv-bias-depth-sum", conv(t.ConvBiasSummedOverDepth, (1, 4, 5), 2, 2), (1, 4, 5), "biases"),
    (
        "conv-bias-depth-sum-3",
        conv(t.ConvBiasSummedOverDepth, (2, 5, 5), 3, 3),
        (2, 5, 5),
        "biases",
    ),
    ("conv-no-flip-k2", conv(t.ConvNoKernelFlip, (1, 4, 5), 2, 2), (1, 4, 5), "input"),
    ("conv-no-flip-k3", conv(t.ConvNoKernelFlip, (2, 6, 5), 3, 3), (2, 6, 5), "input"),
    ("sigmoid-s(1+s)", t.SigmoidPrimePlus, (2, 3, 4), "input"),
    ("sigmoid-s(1+s)-column", t.SigmoidPrimePlus, (6, 1), "input"),
    ("tanh-1-x2", t.TanhPrimeOfInput, (2, 3, 4), "input"),
    ("tanh-1-x2-column", t.TanhPrimeOfInput, (5, 1), "input"),
    ("tanh-in-place", t.TanhInPlace, (3, 4, 1), "input"),
]


@pytest.mark.parametrize(
    ("factory", "shape", "faulty"), [pytest.param(f, s, x, id=i) for i, f, s, x in CASES]
)
@pytest.mark.parametrize("seed", [0, 1])
def test_tutorial_mutant_is_caught_and_blamed_on_the_right_tensor(factory, shape, faulty, seed):
    mutant = factory()
    assert t.FAULTY[type(mutant)] == faulty
    x = sample(shape, 100 + seed)

    report = check_layer(mutant, x, seed=seed)
    assert report.passed is False
    assert {c.tensor for c in report.failures} == {faulty}, report.table()

    twin = t.correct_twin(mutant)
    assert type(twin) is t.TWIN[type(mutant)]
    good = check_layer(twin, x, seed=seed)
    assert good.passed is True, good.table()
    assert [c.tensor for c in good.checks] == [c.tensor for c in report.checks]


def test_tutorial_zoo_is_complete():
    """Every mutant has a case above, and its docstring names the tensor it corrupts."""
    assert {type(factory()) for _, factory, _, _ in CASES} == set(t.FAULTY) == set(t.TWIN)
    for cls in t.FAULTY:
        assert cls.__doc__ and f"``{t.FAULTY[cls]}``" in cls.__doc__, cls


@pytest.mark.parametrize(
    ("factory", "shape"),
    [
        (dense(t.DenseInputAfterUpdate, 5, 4), (5, 1)),
        (dense(t.DenseWeightsNoLearningRate, 4, 3), (4, 1)),
        (conv(t.ConvNoKernelFlip, (1, 5, 5), 2, 2), (1, 5, 5)),
        (conv(t.ConvBiasSummedOverDepth, (1, 5, 5), 2, 2), (1, 5, 5)),
        (t.SigmoidPrimePlus, (3, 4, 1)),
    ],
)
def test_fast_mode_catches_tutorial_mutants_too(factory, shape):
    mutant = factory()
    x = sample(shape, 3)
    report = check_layer(mutant, x, mode="fast")
    assert {c.tensor for c in report.failures} == {t.FAULTY[type(mutant)]}, report.table()
    assert all(c.mode == "fast" for c in report.checks)
    assert check_layer(t.correct_twin(mutant), x, mode="fast").passed


# -- how the bugs read --------------------------------------------------------------------------


def test_the_ordering_bug_is_named_in_the_input_note():
    report = check_layer(dense(t.DenseInputAfterUpdate, 4, 3)(), sample((4, 1)))
    assert report["input"].note == ORDER
    assert report["input"].failures == 4  # and the values are wrong: lr is large enough
    assert report["weights"].passed and report["bias"].passed
    good = check_layer(dense(t.Dense, 4, 3)(), sample((4, 1)))
    assert good["input"].note == ""


def test_a_missing_update_reads_as_such():
    report = check_layer(conv(t.ConvMissingBiasUpdate, (1, 4, 4), 2, 2)(), sample((1, 4, 4)))
    c = report["biases"]
    assert c.note == "backward did not update biases"
    assert c.status == "FAIL: backward did not update biases"
    assert c.analytic is None and c.numeric is None


def test_a_mis_shaped_update_reads_as_such():
    report = check_layer(dense(t.DenseBiasUpdateTransposed, 4, 3)(), sample((4, 1)))
    assert report["bias"].note == "the update changed bias to shape (3, 3), expected (3, 1)"


def test_an_overwritten_output_gradient_is_noted():
    c = check_layer(t.TanhInPlace(), sample((3, 4, 1)))["input"]
    assert c.failures == 0 and c.note == OVERWROTE  # the values are right


def test_a_backward_that_returns_nothing_is_noted():
    class Forgetful(t.Dense):
        def backward(self, output_gradient, learning_rate):
            super().backward(output_gradient, learning_rate)  # the return forgotten

    report = check_layer(t.seeded(lambda: Forgetful(3, 2), 0), sample((3, 1)))
    assert report["input"].note == "backward returned None"
    assert report["weights"].passed and report["bias"].passed


def test_a_zero_gradient_is_not_a_missing_update():
    """At x = 0 the weight gradient is 0 and the update leaves the weights unchanged."""
    report = check_layer(dense(t.Dense, 3, 2)(), np.zeros((3, 1)))
    assert report.passed, report.table()
    assert report["weights"].checked == 6 and report["weights"].analytic == 0.0


# -- the learning rate the check hands to backward ----------------------------------------------


def test_learning_rate_is_a_power_of_two_other_than_one():
    assert LEARNING_RATE != 1 and np.log2(LEARNING_RATE).is_integer()


def test_at_learning_rate_1_a_forgotten_factor_would_hide(monkeypatch):
    mutant = dense(t.DenseWeightsNoLearningRate, 4, 3)()
    assert not check_layer(mutant, sample((4, 1))).passed
    monkeypatch.setattr(gradcheck_tutorial, "LEARNING_RATE", 1.0)
    assert check_layer(mutant, sample((4, 1))).passed


def test_a_tiny_learning_rate_would_raise_false_alarms(monkeypatch):
    """``(p - (p - lr g)) / lr`` loses digits as lr shrinks: at 2**-40 a correct layer's
    inferred weight gradient is off by ~1e-4."""
    layer = dense(t.Dense, 4, 3)()
    monkeypatch.setattr(gradcheck_tutorial, "LEARNING_RATE", 2.0**-40)
    assert {c.tensor for c in check_layer(layer, sample((4, 1))).failures} == {"weights", "bias"}


# -- what is a parameter ------------------------------------------------------------------------


def test_parameters_are_named_by_their_attributes():
    report = check_layer(conv(t.Convolutional, (2, 5, 5), 3, 2)(), sample((2, 5, 5)))
    assert [(c.tensor, c.shape) for c in report.checks] == [
        ("input", (2, 5, 5)),
        ("kernels", (2, 2, 3, 3)),
        ("biases", (2, 3, 3)),
    ]
    for name in ("input", "kernels", "biases"):
        assert report[name].passed and report[name].checked == np.prod(report[name].shape)


def test_forward_state_and_gradient_buffers_are_not_parameters():
    class KeepsGradients(t.Dense):
        def backward(self, output_gradient, learning_rate):
            self.weights_gradient = np.dot(output_gradient, self.input.T)
            return super().backward(output_gradient, learning_rate)

    layer = t.seeded(lambda: KeepsGradients(3, 2), 0)
    layer.forward(sample((3, 1)))  # trained before: input and the buffer exist
    layer.backward(sample((2, 1)), 0.1)
    report = check_layer(layer, sample((3, 1), 1))
    assert [c.tensor for c in report.checks] == ["input", "weights", "bias"]
    assert report.passed, report.table()


def test_the_detection_rule():
    assert is_tutorial_layer(t.Dense(2, 2)) and is_tutorial_layer(t.Sigmoid())
    assert not is_tutorial_layer(LabkitDense(2, 2)) and not is_tutorial_layer(LabkitReLU())
    # labkit's own layers are still checked on a batch
    assert check_layer(LabkitReLU(), sample((2, 3)) + 3)["input"].shape == (2, 3)


# -- the caller's layer -------------------------------------------------------------------------


def snapshot(layer) -> dict:
    return {key: (value, copy.deepcopy(value)) for key, value in vars(layer).items()}


def assert_untouched(layer, before: dict) -> None:
    assert vars(layer).keys() == before.keys()
    for key, (value, saved) in before.items():
        assert getattr(layer, key) is value, key
        if isinstance(value, np.ndarray):
            assert value.dtype == saved.dtype and value.tobytes() == saved.tobytes(), key
        elif not callable(value):
            assert value == saved, key


@pytest.mark.parametrize("mode", ["full", "fast"])
@pytest.mark.parametrize(
    "factory", [dense(t.Dense, 4, 3), dense(t.DenseInputAfterUpdate, 4, 3)], ids=["ok", "bug"]
)
def test_the_callers_dense_layer_is_left_bit_identical(factory, mode):
    layer = factory()
    layer.weights = layer.weights.astype(np.float32)  # the check works in float64
    layer.forward(sample((4, 1), 5))  # a used layer: input cached
    before = snapshot(layer)
    x = sample((4, 1))
    x_before = x.copy()
    check_layer(layer, x, mode=mode)
    assert_untouched(layer, before)
    assert np.array_equal(x, x_before)


def test_the_callers_conv_layer_is_left_bit_identical():
    layer = conv(t.Convolutional, (2, 5, 5), 3, 2)()
    before = snapshot(layer)
    assert check_layer(layer).passed  # x drawn from its input_shape
    assert_untouched(layer, before)


# -- refusals: one line naming the layer --------------------------------------------------------


def refused(layer, x, **options) -> str:
    with pytest.raises(GradcheckError) as exc_info:
        check_layer(layer, x, **options)
    message = str(exc_info.value)
    assert "\n" not in message and isinstance(exc_info.value, LabkitError)
    return message


def test_a_crashing_backward_is_one_line_naming_the_problem():
    layer = dense(t.DenseWeightsGradTransposed, 4, 3)()  # not square: the update can't broadcast
    message = refused(layer, sample((4, 1)))
    assert message.startswith(
        "DenseWeightsGradTransposed: backward(output_gradient, learning_rate)"
    )
    assert "raised ValueError" in message


def test_a_backward_without_learning_rate_is_one_line():
    class NoRate(t.Dense):
        def backward(self, output_gradient):
            return np.dot(self.weights.T, output_gradient)

    message = refused(t.seeded(lambda: NoRate(3, 2), 0), sample((3, 1)))
    assert message.startswith("NoRate: backward") and "TypeError" in message


@pytest.mark.filterwarnings("ignore:invalid value encountered in log:RuntimeWarning")
def test_a_non_finite_forward_is_one_line():
    layer = t.Activation(np.log, lambda x: 1 / x)
    message = refused(layer, -np.ones((3, 1)))
    assert message == "Activation: forward output is not finite (nan or inf)"


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_only_x_must_be_in_the_domain_of_forward():
    """The second probe input (x reversed, halved, + 0.1) is 0 here: 1/x is inf there."""
    reciprocal = t.Activation(lambda x: 1 / x, lambda x: -1 / x**2)
    assert check_layer(reciprocal, np.full((3, 1), -0.2)).passed


def test_a_forward_returning_nothing_is_one_line():
    class Silent(t.Dense):
        def forward(self, input):
            self.input = input  # the return forgotten

    assert refused(t.seeded(lambda: Silent(3, 2), 0), sample((3, 1))) == (
        "Silent: forward returned None"
    )


def test_a_crashing_forward_names_the_shape_of_x():
    message = refused(dense(t.Dense, 4, 3)(), sample((2, 4)))  # a batch, not one sample
    assert message.startswith("Dense: forward(x) of shape (2, 4) raised ValueError")


def test_x_is_asked_for_when_the_layer_has_no_input_shape():
    message = refused(dense(t.Dense, 4, 3)(), None)
    assert message.startswith("Dense: pass x, one sample")


def test_an_empty_x_is_refused():
    message = refused(t.Sigmoid(), np.zeros((0, 1)))
    assert "one non-empty sample" in message and "(0, 1)" in message


def test_a_layer_without_backward_is_refused():
    class ForwardOnly:
        def forward(self, input):
            return input

    assert "has no backward" in refused(ForwardOnly(), np.ones((2, 1)))


# -- the report API -----------------------------------------------------------------------------


def test_report_table_json_and_kinks():
    x = np.array([[0.0], [1.5], [-2.0], [0.0]])
    report = check_layer(t.ReLU(), x)
    c = report["input"]
    assert (c.layer, c.shape, c.mode, c.kinks, c.failures) == ("ReLU", (4, 1), "full", 2, 0)
    assert c.status == "ok (2 kinks)" and report.passed
    lines = check_layer(dense(t.DenseInputAfterUpdate, 4, 3)(), sample((4, 1))).table().splitlines()
    assert lines[0].split()[:2] == ["layer", "tensor"]
    assert [line.split()[:2] for line in lines[2:]] == [
        ["DenseInputAfterUpdate", "input"],
        ["DenseInputAfterUpdate", "weights"],
        ["DenseInputAfterUpdate", "bias"],
    ]
    assert "FAIL 4/4" in lines[2] and lines[3].endswith("ok") and lines[4].endswith("ok")
    loaded = json.loads(check_layer(t.Tanh(), sample((3, 1))).to_json())
    assert loaded["passed"] is True and loaded["checks"][0]["tensor"] == "input"


def test_max_elements_caps_each_tensor():
    report = check_layer(dense(t.Dense, 6, 5)(), sample((6, 1)), max_elements=4)
    assert [c.checked for c in report.checks] == [4, 4, 4] and report.passed


# -- no false alarm -----------------------------------------------------------------------------

NO_FALSE_ALARM = settings(
    max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
seeds = st.integers(0, 2**32 - 1)
sizes = st.integers(1, 5)


def assert_passes(layer, x, seed: int) -> None:
    """Full and fast checks pass with no kink (the layers are smooth), and the caller's
    layer is untouched."""
    before = snapshot(layer)
    for mode in ("full", "fast"):
        report = check_layer(layer, x, mode=mode, seed=seed)
        assert report.passed, report.table()
        assert all(c.kinks == 0 for c in report.checks), report.table()
    assert_untouched(layer, before)


@NO_FALSE_ALARM
@given(n_in=sizes, n_out=sizes, seed=seeds)
def test_tutorial_dense_raises_no_false_alarm(n_in, n_out, seed):
    layer = t.seeded(lambda: t.Dense(n_in, n_out), seed % 2**31)
    assert_passes(layer, sample((n_in, 1), seed), seed)


@NO_FALSE_ALARM
@given(depth_in=st.integers(1, 2), h=st.integers(2, 6), w=st.integers(2, 6), data=st.data())
def test_tutorial_convolutional_raises_no_false_alarm(depth_in, h, w, data):
    k = data.draw(st.integers(1, min(h, w, 3)))
    depth, seed = data.draw(st.integers(1, 3)), data.draw(seeds)
    layer = t.seeded(lambda: t.Convolutional((depth_in, h, w), k, depth), seed % 2**31)
    assert_passes(layer, sample((depth_in, h, w), seed), seed)


images = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4))
columns = st.tuples(st.integers(1, 8), st.just(1))


@NO_FALSE_ALARM
@given(cls=st.sampled_from([t.Sigmoid, t.Tanh]), shape=images | columns, seed=seeds)
def test_tutorial_activations_raise_no_false_alarm(cls, shape, seed):
    assert_passes(cls(), 2 * sample(shape, seed), seed)


@NO_FALSE_ALARM
@given(shape=images, seed=seeds)
def test_tutorial_reshape_raises_no_false_alarm(shape, seed):
    layer = t.Reshape(shape, (int(np.prod(shape)), 1))
    assert_passes(layer, sample(shape, seed), seed)


@pytest.mark.parametrize(
    ("factory", "shape"),
    [(dense(t.DenseInputAfterUpdate, 3, 2), (3, 1)), (t.TanhPrimeOfInput, (2, 2, 2))],
)
def test_no_false_alarm_helper_can_fail(factory, shape):
    with pytest.raises(AssertionError):
        assert_passes(factory(), sample(shape), 0)


# -- the README's example -----------------------------------------------------------------------


def test_the_readme_example_prints_what_the_readme_shows(capsys):
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = text.split("### The tutorial's own layers", 1)[1]
    (language, code), (_, shown) = re.findall(r"```(\w*)\n(.*?)```", section, re.DOTALL)[:2]
    assert language == "python"
    run = compile(code, "README.md", "exec")
    t.seeded(lambda: exec(run, {"__name__": "readme"}), 0)  # it seeds numpy's global generator
    assert capsys.readouterr().out == shown
