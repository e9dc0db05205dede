"""The gradient checker's report API (fields, kinks, JSON, table) and its bad-input errors."""

from __future__ import annotations

import json
import math
import warnings

import mutants as m
import numpy as np
import pytest

from labkit.errors import LabkitError
from labkit.gradcheck import GradcheckError, check_layer, check_network
from labkit.layers import (
    Activation,
    Convolutional,
    Dense,
    Layer,
    MaxPool,
    ReLU,
    Reshape,
    Sigmoid,
    Softmax,
)
from labkit.losses import LOSSES, resolve_loss
from labkit.network import Network
from labkit.optim import SGD
from labkit.train import Trainer


class DenseZeroInputGrad(Dense):
    """Returns a zero input gradient: at every element analytic = 0, numeric = the truth."""

    def backward(self, output_gradient, learning_rate=None):
        return 0 * super().backward(output_gradient, learning_rate)


def strict_json(text: str):
    """json.loads that rejects NaN/Infinity, which are not JSON."""

    def reject(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=reject)


# -- report fields ---------------------------------------------------------------------------


def test_fields_of_a_failing_check_with_a_known_analytic_gradient():
    x = np.random.default_rng(0).standard_normal((3, 4))
    report = check_layer(DenseZeroInputGrad(4, 3, rng=0), x)
    c = report["input"]
    assert (c.layer, c.tensor, c.shape, c.mode) == (report.subject, "input", (3, 4), "full")
    assert c.checked == c.failures == 12 and c.kinks == 0 and c.note == ""
    assert c.passed is False
    assert c.numeric_error is not None and 0 < c.numeric_error < 1e-6
    assert c.status == (
        f"FAIL 12/12 (analytic {c.analytic:.6g}, numeric {c.numeric:.6g} "
        f"± {c.numeric_error:.1g} at worst)"
    )
    # analytic is 0 everywhere, so the worst element is the largest true gradient, its
    # absolute error is that gradient, and every relative error is exactly 1
    assert c.analytic == 0.0
    assert c.numeric != 0.0
    assert c.max_abs_error >= abs(c.numeric) > 0
    assert c.max_rel_error == pytest.approx(1.0, rel=1e-12)
    assert isinstance(c.worst_index, tuple) and len(c.worst_index) == 2
    for i, n in zip(c.worst_index, c.shape, strict=True):
        assert isinstance(i, int) and 0 <= i < n
    assert report["weights"].passed and report["bias"].passed
    assert [f.tensor for f in report.failures] == ["input"]


def test_fields_of_a_gradient_off_by_a_factor():
    x = np.random.default_rng(1).standard_normal((2, 5))
    c = check_layer(m.DenseInputScaled(5, 4, rng=1), x)["input"]
    assert c.failures == c.checked == 10
    assert c.analytic == pytest.approx(1.001 * c.numeric, rel=1e-7)
    assert c.max_rel_error == pytest.approx(0.001 / 1.001, rel=1e-4)
    assert c.max_abs_error >= abs(c.analytic - c.numeric)
    assert c.shape == (2, 5)


def test_fields_of_a_passing_check():
    x = np.random.default_rng(2).standard_normal((2, 2, 5, 5))
    report = check_layer(Convolutional((2, 5, 5), 3, 2, rng=2), x)
    assert report.passed and report.failures == []
    # the finite-difference checks, then the same tensors in the layer's own float32
    assert [(c.tensor, c.dtype) for c in report.checks] == [
        (tensor, dtype)
        for dtype in ("float64", "float32")
        for tensor in ("input", "kernels", "biases")
    ]
    assert [c.shape for c in report.checks] == 2 * [(2, 2, 5, 5), (2, 2, 3, 3), (2, 3, 3)]
    for c in differenced(report):
        assert c.status == "ok" and c.failures == 0 and c.checked == math.prod(c.shape)
        assert c.max_abs_error < 1e-7 and c.max_rel_error < 1e-5
        assert c.analytic == pytest.approx(c.numeric, rel=1e-5, abs=1e-8)


def differenced(report):
    """The report's finite-difference checks (not those in the layer's own dtype)."""
    return [c for c in report.checks if c.against == "numeric"]


def test_report_getitem_unknown_tensor():
    report = check_layer(Sigmoid(), np.ones((1, 3)))
    with pytest.raises(KeyError):
        report["weights"]


def test_network_report_names_a_tensor_by_layer_and_refuses_a_shared_bare_name():
    network = Network([Dense(3, 4, rng=0), ReLU(), Dense(4, 2, rng=1)])
    report = check_network(network, np.ones((2, 3)) * 0.3, np.eye(2)[[0, 1]])
    first, last = report["00-Dense.weights"], report["02-Dense.weights"]
    assert (first.layer, first.shape) == ("00-Dense", (4, 3))
    assert (last.layer, last.shape) == ("02-Dense", (2, 4))
    assert report["input"].layer == "network"
    with pytest.raises(KeyError, match="several layers"):
        report["weights"]


def test_max_elements_caps_each_tensor():
    x = np.random.default_rng(3).standard_normal((2, 6))
    report = check_layer(Dense(6, 5, rng=3), x, max_elements=7)
    assert [c.checked for c in differenced(report)] == [7, 7, 5]
    assert report.passed


# -- kinks -----------------------------------------------------------------------------------


def test_relu_at_exactly_zero_is_a_kink_not_a_failure():
    x = np.array([[0.0, 1.5, -2.0, 0.0, 3.0], [0.7, 0.0, -0.3, 2.0, -1.0]])
    c = check_layer(ReLU(), x)["input"]
    assert c.kinks == 3 and c.failures == 0 and c.checked == 10
    assert c.passed and c.status == "ok (3 kinks)"
    assert x[c.worst_index] != 0  # errors are reported over the non-kink elements only


def test_one_kink_is_singular():
    c = check_layer(ReLU(), np.array([[0.0, 1.0, -1.0]]))["input"]
    assert c.status == "ok (1 kink)"


def test_maxpool_tie_is_a_kink_not_a_failure():
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4))
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = 5.0  # two tied maxima in one window
    x[0, 1, 2, 3] = x[0, 1, 3, 3] = 4.0  # and in another
    c = check_layer(MaxPool(2), x)["input"]
    # Each tied maximum's one-sided differences disagree (moved up, it wins the window;
    # moved down, it loses it): all four are kinks. Moved together they stay tied, and the
    # gradient the first of each tie got matches that joint slope.
    assert c.kinks == 4 and c.failures == 0 and c.passed
    assert c.status == "ok (4 kinks)"


def test_kinks_do_not_hide_real_failures():
    x = np.array([[0.0, 1.5, -2.0, 0.0, -3.0]])
    c = check_layer(m.ReLUPassesNegative(), x)["input"]
    assert c.kinks == 2 and c.failures == 2 and not c.passed


# -- fast mode -------------------------------------------------------------------------------


@pytest.mark.parametrize("directions", [1, 4, 9])
def test_fast_mode_flags_a_gradient_scaled_by_1_001(directions):
    x = np.random.default_rng(4).standard_normal((3, 6))
    report = check_layer(m.DenseInputScaled(6, 4, rng=4), x, mode="fast", directions=directions)
    assert m.failing_tensors(report) == {"input"}
    c = report["input"]
    assert c.mode == "fast" and c.checked == directions and c.failures == directions
    assert c.worst_index is not None and len(c.worst_index) == 1
    assert c.analytic == pytest.approx(1.001 * c.numeric, rel=1e-6)


def test_fast_mode_is_deterministic_for_a_seed():
    x = np.random.default_rng(5).standard_normal((2, 4))
    layer = m.DenseInputScaled(4, 4, rng=5)
    first = check_layer(layer, x, mode="fast", seed=3).to_dict()
    assert check_layer(layer, x, mode="fast", seed=3).to_dict() == first


# -- JSON and table --------------------------------------------------------------------------


def failing_network_report():
    rng = np.random.default_rng(6)
    network = Network([m.ConvBiasFirstSample((1, 4, 4), 2, 2, rng=rng), ReLU()])
    network.layers.append(Reshape((2, 3, 3), (18,)))
    network.layers.append(Dense(18, 3, rng=rng))
    network.layers[0].name = "conv1"
    x = rng.standard_normal((2, 1, 4, 4))
    return check_network(network, x, np.eye(3)[[0, 2]], mode="full")


@pytest.mark.parametrize(
    "make",
    [
        lambda: check_layer(m.DenseInputScaled(4, 3, rng=0), np.ones((2, 4))),
        lambda: check_layer(m.ConvMissingBiasGrad((1, 4, 4), 2, 2, rng=0)),
        lambda: check_layer(ReLU(), np.array([[0.0, 1.0]])),
        lambda: check_layer(ReLU(), np.array([[0.0, 1.0]]), mode="fast"),
        failing_network_report,
    ],
    ids=["failing", "missing-grad", "kinks", "fast-all-kinks", "network"],
)
def test_to_dict_and_to_json_round_trip(make):
    report = make()
    loaded = strict_json(report.to_json())  # strict: NaN or Infinity would be refused
    assert loaded["subject"] == report.subject and loaded["passed"] is report.passed
    assert len(loaded["checks"]) == len(report.checks)
    for entry, check in zip(loaded["checks"], report.checks, strict=True):
        assert entry["layer"] == check.layer and entry["tensor"] == check.tensor
        assert entry["shape"] == list(check.shape)
        assert entry["passed"] is check.passed and entry["status"] == check.status
        assert entry["worst_index"] == (
            None if check.worst_index is None else list(check.worst_index)
        )
        for key in ("checked", "failures", "kinks", "max_abs_error", "max_rel_error", "note"):
            assert entry[key] == getattr(check, key)


def test_json_of_a_missing_gradient_has_nulls_and_the_note():
    report = check_layer(m.ConvMissingBiasGrad((1, 4, 4), 2, 2, rng=0))
    entry = strict_json(report.to_json())["checks"][2]
    assert entry["tensor"] == "biases" and entry["passed"] is False
    assert entry["analytic"] is None and entry["numeric"] is None
    assert "unset" in entry["note"]


def test_table_names_the_failing_layer_and_tensor():
    layer = m.DenseInputScaled(4, 3, rng=0)
    layer.name = "fc1"
    table = check_layer(layer, np.random.default_rng(0).standard_normal((2, 4))).table()
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["layer", "tensor"] and set(lines[1]) == {"-"}
    failing = [line for line in lines if "FAIL" in line]
    assert len(failing) == 1
    assert failing[0].split()[:2] == ["fc1", "input"]
    assert "analytic" in failing[0] and "numeric" in failing[0]
    assert all(line.split()[0] == "fc1" for line in lines[2:])


def test_network_table_names_the_failing_layer_and_tensor():
    report = failing_network_report()
    assert not report.passed
    assert [(c.layer, c.tensor) for c in report.failures] == [("conv1", "biases")]
    failing = [line for line in report.table().splitlines() if "FAIL" in line]
    assert len(failing) == 1 and failing[0].split()[:2] == ["conv1", "biases"]


def test_table_shows_the_note_of_a_shape_mismatch():
    layer = m.DenseTransposedWeightGrad(4, 3, rng=0)
    layer.name = "dense"
    table = check_layer(layer, np.ones((2, 4))).table()
    (failing,) = [line for line in table.splitlines() if "FAIL" in line]
    assert failing.split()[:2] == ["dense", "weights"]
    assert "gradient has shape (4, 3), expected (3, 4)" in failing


# -- bad input -------------------------------------------------------------------------------


class ForwardOnly(Layer):
    """A user's layer that never got a backward."""

    def forward(self, input):
        return 2 * input


class NotFinite(Layer):
    """Produces NaN for negative inputs and inf for zeros."""

    def forward(self, input):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.sqrt(input) / (input != 0)

    def backward(self, output_gradient, learning_rate=None):
        return output_gradient


def assert_one_line_naming(exc_info, name: str) -> None:
    message = str(exc_info.value)
    assert name in message, message
    assert "\n" not in message
    assert isinstance(exc_info.value, LabkitError)


@pytest.mark.parametrize("eps", [0.0, 1.0, -1e-6, 1.5, float("nan"), float("inf")])
def test_eps_outside_the_open_unit_interval_is_refused(eps):
    with pytest.raises(GradcheckError) as exc_info:
        check_layer(Dense(3, 2, rng=0), np.ones((1, 3)), eps=eps)
    assert "eps" in str(exc_info.value) and "\n" not in str(exc_info.value)
    with pytest.raises(GradcheckError):
        check_network(Network([Dense(3, 2, rng=0)]), np.ones((1, 3)), np.eye(2)[[0]], eps=eps)


def test_eps_message_names_the_layer():
    layer = Dense(3, 2, rng=0)
    layer.name = "fc-eps"
    with pytest.raises(GradcheckError) as exc_info:
        check_layer(layer, np.ones((1, 3)), eps=0.0)
    assert_one_line_naming(exc_info, "fc-eps")


@pytest.mark.parametrize("name", [None, "my-layer"])
def test_layer_without_backward_is_refused(name):
    layer = ForwardOnly()
    layer.name = name
    with pytest.raises(GradcheckError) as exc_info:
        check_layer(layer, np.ones((2, 3)))
    assert_one_line_naming(exc_info, name or "ForwardOnly")
    assert "backward" in str(exc_info.value)


def test_network_with_a_layer_without_backward_is_refused():
    network = Network([Dense(3, 3, rng=0), ForwardOnly()])
    with pytest.raises(GradcheckError) as exc_info:
        check_network(network, np.ones((2, 3)), np.eye(3)[[0, 1]])
    assert_one_line_naming(exc_info, "01-ForwardOnly")


@pytest.mark.parametrize("bad", [-1.0, 0.0])
def test_layer_with_non_finite_output_is_refused(bad):
    layer = NotFinite()
    layer.name = "sqrt-ish"
    x = np.ones((2, 4))
    x[1, 2] = bad
    with pytest.raises(GradcheckError) as exc_info:
        check_layer(layer, x)
    assert_one_line_naming(exc_info, "sqrt-ish")
    assert "finite" in str(exc_info.value)


def test_network_with_non_finite_output_is_refused():
    network = Network([Dense(3, 3, rng=0), NotFinite()])
    with pytest.raises(GradcheckError) as exc_info:
        check_network(network, -np.ones((2, 3)) * 10, np.eye(3)[[0, 1]])
    assert "finite" in str(exc_info.value) and "\n" not in str(exc_info.value)


WRONG_SHAPES = [
    ("dense-size", lambda: Dense(4, 3), (2, 5)),
    ("dense-rank", lambda: Dense(4, 3), (2, 4, 2)),
    ("conv-width", lambda: Convolutional((1, 5, 5), 2, 2), (2, 1, 5, 4)),
    ("conv-channels", lambda: Convolutional((2, 5, 5), 2, 2), (2, 1, 5, 5)),
    ("maxpool-rank", lambda: MaxPool(2), (2, 4, 4)),
    ("maxpool-too-small", lambda: MaxPool(3), (1, 1, 2, 5)),
    ("reshape-size", lambda: Reshape((2, 3), (6,)), (2, 3, 2)),
    ("softmax-1d", lambda: Softmax(), (5,)),
]


@pytest.mark.parametrize(
    ("factory", "shape"), [pytest.param(f, s, id=i) for i, f, s in WRONG_SHAPES]
)
@pytest.mark.parametrize("name", [None, "the-layer"])
def test_input_of_the_wrong_shape_is_refused(factory, shape, name):
    layer = factory()
    layer.name = name
    with pytest.raises(GradcheckError) as exc_info:
        check_layer(layer, np.ones(shape))
    assert_one_line_naming(exc_info, name or type(layer).__name__)
    assert str(shape) in str(exc_info.value)


def test_network_input_of_the_wrong_shape_is_refused():
    network = Network([Dense(4, 3, rng=0)])
    with pytest.raises(GradcheckError) as exc_info:
        check_network(network, np.ones((2, 5)), np.eye(3)[[0, 1]])
    assert_one_line_naming(exc_info, "00-Dense")


def test_gradcheck_error_is_a_labkit_and_value_error():
    assert issubclass(GradcheckError, LabkitError) and issubclass(GradcheckError, ValueError)


def test_an_unknown_loss_is_one_line_naming_the_known_ones():
    with pytest.raises(LabkitError) as exc_info:
        resolve_loss("hinge")
    message = str(exc_info.value)
    assert message.startswith("unknown loss 'hinge'") and "\n" not in message
    assert all(name in message for name in LOSSES)
    assert resolve_loss("mse") is LOSSES["mse"]
    custom = m.NO_MEAN_LOSS
    assert resolve_loss(custom) is custom
    network = Network([Dense(3, 2, rng=0)])
    with pytest.raises(LabkitError, match="^unknown loss 'hinge'"):
        check_network(network, np.ones((2, 3)), np.eye(2), loss="hinge")
    with pytest.raises(LabkitError, match="^unknown loss 'hinge'"):  # the trainer: the same
        Trainer(network, SGD(network, lr=0.1), loss="hinge", progress=False)


# -- regressions: NaN derivatives, non-finite losses, kinks in fast mode, rounding noise ----


def test_nan_numeric_derivative_is_not_a_pass():
    layer = Activation(np.sqrt, lambda x: np.zeros_like(x))  # wrong derivative (0)
    layer.name = "sqrt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        report = check_layer(layer, np.zeros((1, 3)))  # sqrt(0 - eps) is NaN
    assert not report.passed


def test_network_with_nan_loss_is_refused():
    rng = np.random.default_rng(0)
    network = Network([m.DenseInputScaled(3, 2, rng=rng)])  # logits, no sigmoid
    x = rng.standard_normal((4, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(GradcheckError) as exc_info:
            check_network(network, x, np.eye(2)[[0, 1, 0, 1]], loss="binary_cross_entropy")
    assert "not finite" in str(exc_info.value)


def test_fast_network_check_of_a_correct_network_on_a_blank_region_passes():
    network = Network(
        [
            Convolutional((1, 6, 6), 3, 2, rng=0),
            ReLU(),
            Reshape((2, 4, 4), (32,)),
            Dense(32, 3, rng=0),
        ]
    )
    x = np.zeros((2, 1, 6, 6))  # a digit in one corner, the rest blank
    x[:, :, 1:3, 1:3] = np.random.default_rng(0).uniform(0.2, 1.0, (2, 1, 2, 2))
    y = np.eye(3)[[0, 1]]
    full = check_network(network, x, y, mode="full")
    assert full.passed and full["input"].kinks > 0  # only kinks on the blank region
    fast = check_network(network, x, y, mode="fast")
    assert fast.passed, fast.table()
    # every random direction crosses a ReLU kink there: those tensors fall back to elements
    assert fast["input"].mode == "fast→elements" and fast["input"].kinks > 0
    assert fast["input"].checked > 0


def test_correct_convolution_on_large_inputs_passes():
    layer = Convolutional((1, 8, 8), 3, 2, rng=9)
    x = np.random.default_rng(9).standard_normal((2, 1, 8, 8)) * 30
    # the untied bias gradient is exactly the batch sum of the projection: it is right
    assert check_layer(layer, x, seed=9).passed
