"""No false alarm at awkward inputs, and the checker's new power depends on its tolerance.

The property tests of tests/test_gradcheck_properties.py draw well-scaled inputs away from
kinks. Here correct layers meet what the error-controlled comparison must survive: inputs
and parameters from 1e-6 to 1e6, ReLU inputs exactly at 0, max-pool windows with exact
ties (integer-valued inputs), and layers that couple the samples of a batch, at every
batch size down to 1. Then the converse: loosened to the old tolerance, the checker lets
the subtle mutants through, so their tests are what holds the sensitivity in place.
"""

from __future__ import annotations

import mutants as m
import mutants_power as mp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit.gradcheck import check_layer
from labkit.layers import Convolutional, Dense, MaxPool, ReLU, Sigmoid, Softmax, Tanh

AWKWARD = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

seeds = st.integers(0, 2**32 - 1)
batches = st.integers(1, 4)
exponents = st.integers(-6, 6)


def normal(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def assert_no_false_alarm(layer, x, seed: int) -> None:
    for mode in ("full", "fast"):
        report = check_layer(layer, x, mode=mode, seed=seed)
        assert report.passed, report.table()


@AWKWARD
@given(
    kind=st.sampled_from(["conv", "dense"]),
    input_exponent=exponents,
    weight_exponent=exponents,
    batch=batches,
    seed=seeds,
)
def test_linear_layers_pass_at_every_magnitude(kind, input_exponent, weight_exponent, batch, seed):
    if kind == "conv":
        layer = Convolutional((2, 5, 5), 3, 2, dtype=np.float64, rng=seed)
        shape = (batch, 2, 5, 5)
    else:
        layer = Dense(6, 4, dtype=np.float64, rng=seed)
        shape = (batch, 6)
    for name, value in layer.params.items():
        value[...] = normal(seed + len(name), value.shape) * 10.0**weight_exponent
    x = normal(seed, shape) * 10.0**input_exponent
    assert_no_false_alarm(layer, x, seed % 1000)


@AWKWARD
@given(
    layer=st.sampled_from([Sigmoid, Tanh, Softmax, ReLU, lambda: MaxPool(2)]),
    exponent=exponents,
    batch=batches,
    seed=seeds,
)
def test_activations_and_pooling_pass_at_every_magnitude(layer, exponent, batch, seed):
    x = normal(seed, (batch, 2, 4, 4)) * 10.0**exponent
    if exponent >= 0:  # a continuous draw: at large scale, no element sits near a kink
        x = np.where(np.abs(x) < 1e-3 * 10.0**exponent, 10.0**exponent, x)
    assert_no_false_alarm(layer(), x, seed % 1000)


@AWKWARD
@given(fraction=st.floats(0.1, 0.9), batch=batches, seed=seeds)
def test_relu_exactly_at_zero_passes(fraction, batch, seed):
    x = normal(seed, (batch, 3, 4))
    x[np.random.default_rng(seed + 1).random(x.shape) < fraction] = 0.0
    x[0, 0, 0] = 1.5  # one element off the kink: with none, nothing is checked (below)
    assert_no_false_alarm(ReLU(), x, seed % 1000)


def test_an_input_made_only_of_kinks_does_not_pass():
    x = np.zeros((2, 3))  # every ReLU input exactly at its kink
    check = check_layer(ReLU(), x)["input"]
    assert check.kinks == check.checked == 6 and not check.passed
    assert "every element is at a kink" in check.note


@AWKWARD
@given(
    pool=st.integers(2, 3),
    stride=st.integers(1, 3),
    values=st.integers(2, 4),
    batch=batches,
    seed=seeds,
)
def test_maxpool_with_exact_ties_passes(pool, stride, values, batch, seed):
    x = np.random.default_rng(seed).integers(0, values, (batch, 2, 6, 6)).astype(np.float64)
    assert_no_false_alarm(MaxPool(pool, stride), x, seed % 1000)


@AWKWARD
@given(batch=batches, features=st.integers(1, 6), seed=seeds)
def test_layers_that_couple_samples_pass_at_every_batch_size(batch, features, seed):
    x = normal(seed, (batch, features))
    assert_no_false_alarm(mp.BatchCentering(), x, seed % 1000)
    labels = np.eye(max(features, 2))[np.arange(batch) % max(features, 2)]
    fused = mp.FusedSoftmaxCrossEntropy(labels)
    assert_no_false_alarm(fused, normal(seed, labels.shape), seed % 1000)


@pytest.mark.parametrize(
    ("mutant", "shape", "tensor"),
    [
        (
            mp.ConvKernelOneElementOff((2, 6, 6), 3, 3, dtype=np.float64, rng=0),
            (2, 2, 6, 6),
            "kernels",
        ),
        (mp.DenseWeightsScaled(8, 5, dtype=np.float64, rng=0), (3, 8), "weights"),
    ],
)
def test_the_subtle_mutants_escape_a_loosened_checker(mutant, shape, tensor):
    x = normal(0, shape)
    assert not check_layer(mutant, x)[tensor].passed
    assert check_layer(mutant, x, rtol=1e-4)[tensor].passed  # the tolerance is what sees them


# -- fast mode at exact kinks -------------------------------------------------------------


def test_fast_fallback_to_elements_still_catches_a_wrong_gradient():
    x = np.array([[0.0, 1.5, -2.0, 0.0, -3.0]])  # exact zeros: every direction crosses a kink
    c = check_layer(ReLUPassesEverything(), x, mode="fast")["input"]
    assert c.mode == "fast→elements"
    assert c.kinks == 2 and c.failures == 2 and not c.passed


class ReLUPassesEverything(ReLU):
    """A ReLU whose backward passes every gradient, the kinks' too (so even the gradient's
    own direction crosses the kinks at 0)."""

    def backward(self, output_gradient, learning_rate=None):
        return output_gradient.copy()


def test_the_gradients_own_direction_catches_a_wrong_relu_without_falling_back():
    x = np.array([[0.0, 1.5, -2.0, 0.0, -3.0]])
    c = check_layer(m.ReLUPassesNegative(), x, mode="fast")["input"]  # 0 at the kinks
    assert c.mode == "fast" and not c.passed
