"""labkit.fused: Convolutional -> MaxPool -> ReLU as one block computes the layers' function.

Forward values and every gradient the layers pass on are the layers' own to the bit
(ties included: blank images make every window of the background a tie); the conv's
parameter gradients, summed in window order, agree to rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit import fused
from labkit.layers import Convolutional, MaxPool, ReLU, Sigmoid
from labkit.models import lenet
from labkit.network import Network

SETTINGS = settings(
    max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def images_with_ties(rng: np.random.Generator, n: int, shape, dtype) -> np.ndarray:
    """Random images whose first half are blank but for a square: ties in many windows."""
    x = rng.standard_normal((n, *shape)).astype(dtype)
    x[: n // 2] = 0
    x[: n // 2, :, 2:6, 2:6] = 1
    return x


def unfused_and_step(network: Network, x: np.ndarray, g_seed: int = 1):
    """(output, input gradient, parameter gradients) layer by layer and by the step path."""
    results = []
    for forward, backward in (
        (network.forward, network.backward),
        (network.step_forward, network.step_backward),
    ):
        out = forward(x)
        g = np.random.default_rng(g_seed).standard_normal(out.shape).astype(out.dtype)
        dx = backward(g)
        grads = {
            (i, name): value.copy()
            for i, layer in enumerate(network)
            for name, value in layer.grads.items()
        }
        results.append((out, dx, grads))
    return results


def test_plan_fuses_lenets_two_runs_and_nothing_else():
    steps = fused.plan(lenet().layers)
    blocks = [step for step in steps if isinstance(step, fused.ConvPoolReLU)]
    assert len(blocks) == 2 and len(steps) == 10 - 2 * 2
    conv = Convolutional((1, 12, 12), 3, 4, bias="tied", rng=0)  # output 10x10
    assert fused.fusable(conv, MaxPool(2), ReLU())
    assert not fused.fusable(conv, MaxPool(3), ReLU())  # 10 is not a multiple of 3
    assert not fused.fusable(conv, MaxPool(2, stride=1), ReLU())
    assert not fused.fusable(conv, MaxPool(2), Sigmoid())
    untied = Convolutional((1, 12, 12), 3, 4, bias="untied", rng=0)
    assert not fused.fusable(untied, MaxPool(2), ReLU())

    class MyReLU(ReLU):  # a subclass may compute something else: never fused
        pass

    assert not fused.fusable(conv, MaxPool(2), MyReLU())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 6])
def test_lenet_step_path_equals_the_layers(dtype, n):
    rng = np.random.default_rng(n)
    network = lenet(seed=n, dtype=dtype)
    for layer in network:
        for name, value in layer.params.items():
            layer.params[name] = (0.3 * rng.standard_normal(value.shape)).astype(dtype)
    x = images_with_ties(rng, n, (1, 28, 28), dtype)
    (out, dx, grads), (step_out, step_dx, step_grads) = unfused_and_step(network, x)
    assert np.array_equal(out, step_out)
    assert np.array_equal(dx, step_dx)  # pool routing, ReLU mask and col2im: to the bit
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for key, value in grads.items():
        scale = max(float(np.abs(value).max()), 1e-30)
        np.testing.assert_allclose(step_grads[key], value, rtol=0, atol=tol * scale, err_msg=key)


@st.composite
def blocks(draw):
    d = draw(st.integers(1, 3))
    k = draw(st.integers(1, 3))
    p = draw(st.integers(1, 3))
    oh, ow = p * draw(st.integers(1, 3)), p * draw(st.integers(1, 3))
    depth, n, seed = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(0, 9))
    return d, k, p, (oh + k - 1, ow + k - 1), depth, n, seed


@SETTINGS
@given(case=blocks())
def test_any_fusable_block_equals_its_layers(case):
    d, k, p, (h, w), depth, n, seed = case
    rng = np.random.default_rng(seed)
    conv = Convolutional((d, h, w), k, depth, bias="tied", dtype=np.float64, rng=rng)
    conv.params["biases"] = rng.standard_normal(depth)
    # an extra layer before the block, so the block's input gradient is asked for
    network = Network([ReLU(), conv, MaxPool(p), ReLU()])
    assert isinstance(fused.plan(network.layers)[1], fused.ConvPoolReLU)
    x = rng.standard_normal((n, d, h, w))
    x[:, :, ::2] = 0.5  # repeated values: ties
    (out, dx, grads), (step_out, step_dx, step_grads) = unfused_and_step(network, x, seed)
    assert np.array_equal(out, step_out)
    assert np.array_equal(dx, step_dx)
    for key, value in grads.items():
        np.testing.assert_allclose(step_grads[key], value, rtol=1e-12, atol=1e-12, err_msg=key)


def test_a_block_fires_its_layers_hooks_with_their_own_values():
    rng = np.random.default_rng(3)
    network = lenet(seed=3, dtype=np.float64)
    x = images_with_ties(rng, 4, (1, 28, 28), np.float64)
    seen: dict[str, list] = {"unfused": [], "step": []}
    for label, forward, backward in (
        ("unfused", network.forward, network.backward),
        ("step", network.step_forward, network.step_backward),
    ):

        def keep(layer, first, second, label=label, kind="forward"):
            seen[label].append((kind, layer.name, first, second))

        def keep_backward(layer, first, second, label=label):
            seen[label].append(("backward", layer.name, first, second))

        with network.register_hook(keep, keep_backward):
            out = forward(x)
            backward(np.ones_like(out), input_gradient=False)
    assert [entry[:2] for entry in seen["step"]] == [entry[:2] for entry in seen["unfused"]]
    for (kind, name, *values), (_, _, *step_values) in zip(
        seen["unfused"], seen["step"], strict=True
    ):
        for value, step_value in zip(values, step_values, strict=True):
            if value is None:
                assert step_value is None, (kind, name)
            else:
                assert np.array_equal(value, step_value), (kind, name)


def test_a_hook_on_one_layer_of_a_block_sees_what_that_layer_would():
    network = lenet(seed=4, dtype=np.float64)
    x = images_with_ties(np.random.default_rng(4), 4, (1, 28, 28), np.float64)
    seen = []
    handle = network.layers[2].register_backward_hook(lambda _, a, b: seen.append((a, b)))
    with handle:
        for forward, backward in (
            (network.forward, network.backward),
            (network.step_forward, network.step_backward),
        ):
            out = forward(x)
            backward(np.ones_like(out), input_gradient=False)
    (relu_in, relu_out), (step_in, step_out) = seen
    assert np.array_equal(relu_in, step_in) and np.array_equal(relu_out, step_out)


def test_step_backward_needs_a_step_forward_that_kept_its_arrays():
    network = lenet()
    with pytest.raises(RuntimeError, match="step_forward first"):
        network.step_backward(np.zeros((1, 10), np.float32))
    out = network.step_forward(np.zeros((2, 1, 28, 28), np.float32), backward=False)
    with pytest.raises(RuntimeError, match="step_forward first"):  # inference kept nothing
        network.step_backward(np.zeros_like(out))


def test_a_wrong_gradient_shape_is_one_line_naming_the_layer():
    block = fused.plan(lenet().layers)[0]
    block.forward(np.zeros((2, 1, 28, 28), np.float32))
    with pytest.raises(
        ValueError, match=r"02-ReLU.*expected output gradient of shape \(N, 16, 12, 12\)"
    ):
        block.backward(np.zeros((2, 16, 12, 11), np.float32))
