"""Hooks fire with the right arguments, stop after remove(), and cost nothing when absent."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from labkit.gradcheck import check_layer
from labkit.layers import Convolutional, Dense, Layer, ReLU
from labkit.models import lenet


def batch(n: int = 3) -> np.ndarray:
    return np.random.default_rng(0).random((n, 1, 28, 28), dtype=np.float32)


def test_forward_and_backward_hooks_see_every_layer_with_the_right_shapes():
    network = lenet()
    forward, backward = [], []
    handles = network.register_hook(
        forward=lambda layer, x, y: forward.append((layer.name, x.shape, y.shape)),
        backward=lambda layer, gi, go: backward.append(
            (layer.name, None if gi is None else gi.shape, go.shape, dict(layer.grads))
        ),
    )
    x = batch()
    shapes, h = [], x
    for layer in network.layers:
        out = type(layer).forward(copy.deepcopy(layer), h)
        shapes.append((layer.name, h.shape, out.shape))
        h = out
    output = network.forward(x)
    assert forward == shapes
    network.backward(np.ones_like(output))
    assert [name for name, *_ in backward] == [layer.name for layer in reversed(network.layers)]
    for (name, grad_in, grad_out, _grads), (_, x_shape, y_shape) in zip(
        backward, reversed(shapes), strict=True
    ):
        assert grad_in == x_shape and grad_out == y_shape, name
    conv = next(entry for entry in backward if entry[0] == "00-Convolutional")
    assert set(conv[3]) == {"kernels", "biases"}  # parameter gradients reachable
    handles.remove()


def test_hooks_receive_the_actual_arrays():
    layer = Dense(4, 3, rng=0)
    seen = {}
    layer.register_forward_hook(lambda lay, x, y: seen.update(layer=lay, x=x, y=y))
    layer.register_backward_hook(lambda lay, gi, go: seen.update(gi=gi, go=go))
    x = np.ones((2, 4))
    y = layer.forward(x)
    g = np.full((2, 3), 0.5)
    gi = layer.backward(g)
    assert seen["layer"] is layer and seen["x"] is x and seen["y"] is y
    assert seen["go"] is g and seen["gi"] is gi


def test_remove_stops_the_hook_and_restores_the_class_method():
    layer = ReLU()
    calls = []
    first = layer.register_forward_hook(lambda *a: calls.append("first"))
    second = layer.register_forward_hook(lambda *a: calls.append("second"))
    layer.forward(np.ones((1, 2)))
    assert calls == ["first", "second"]
    first.remove()
    layer.forward(np.ones((1, 2)))
    assert calls == ["first", "second", "second"]
    second.remove()
    second.remove()  # harmless
    layer.forward(np.ones((1, 2)))
    assert calls == ["first", "second", "second"]
    assert "forward" not in vars(layer)  # no wrapper left: zero cost again


def test_handles_work_as_context_managers():
    network = lenet()
    calls = []
    with network.register_hook(forward=lambda *a: calls.append(1)):
        network.forward(batch(1))
    network.forward(batch(1))
    assert len(calls) == len(network.layers)


def test_a_user_layer_in_the_tutorial_style_can_be_hooked():
    class Double(Layer):
        def forward(self, input):
            return 2 * input

        def backward(self, output_gradient, learning_rate=None):
            return 2 * output_gradient

    layer = Double()
    seen = []
    layer.register_forward_hook(lambda lay, x, y: seen.append(y.sum()))
    layer.register_backward_hook(lambda lay, gi, go: seen.append(gi.sum()))
    layer.backward(layer.forward(np.ones((1, 3))))
    assert seen == [6.0, 12.0]


def test_the_skipped_input_gradient_is_reported_as_none():
    conv = Convolutional((1, 5, 5), 3, 2, rng=0)
    seen = []
    conv.register_backward_hook(lambda lay, gi, go: seen.append(gi))
    conv.forward(np.ones((1, 1, 5, 5)))
    assert conv.backward(np.ones((1, 2, 3, 3)), input_gradient=False) is None
    assert seen == [None]


def test_copies_and_gradient_checks_do_not_carry_hooks():
    layer = Dense(3, 2, rng=0)
    calls = []
    layer.register_forward_hook(lambda *a: calls.append(1))
    clone = copy.deepcopy(layer)
    clone.forward(np.ones((1, 3)))
    assert calls == []
    assert check_layer(layer).passed
    assert calls == []  # the checker worked on its own hook-free copy


def test_bad_hooks_are_refused():
    with pytest.raises(TypeError):
        ReLU().register_forward_hook("not callable")
