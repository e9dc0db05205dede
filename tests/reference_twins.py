"""The ``labkit.reference`` twin of a fast layer, for tests that hold one against the other."""

from __future__ import annotations

import numpy as np

from labkit import layers, reference


def to_reference(layer: layers.Layer):
    """The reference layer equivalent to a fast one, carrying a copy of its parameters."""
    if isinstance(layer, layers.Convolutional):
        d, h, w = layer.input_shape
        ref = reference.Convolutional(
            (d, h, w), layer.kernel_size, layer.depth, bias=layer.bias_mode
        )
        ref.params["kernels"] = layer.kernels.astype(np.float64)
        ref.params["biases"] = layer.biases.astype(np.float64)
    elif isinstance(layer, layers.Dense):
        ref = reference.Dense(layer.input_size, layer.output_size)
        ref.params["weights"] = layer.weights.astype(np.float64)
        ref.params["bias"] = layer.bias.astype(np.float64).reshape(-1, 1)
    elif isinstance(layer, layers.MaxPool):
        ref = reference.MaxPool(layer.pool_size, layer.stride)
    elif isinstance(layer, layers.Reshape):
        # The reference works on column vectors: a flat (n,) sample is (n, 1) there.
        out = layer.out_shape if len(layer.out_shape) > 1 else (*layer.out_shape, 1)
        ref = reference.Reshape(layer.input_shape, out)
    elif isinstance(layer, layers.Sigmoid):
        ref = reference.Sigmoid()
    elif isinstance(layer, layers.Tanh):
        ref = reference.Tanh()
    elif isinstance(layer, layers.ReLU):
        ref = reference.ReLU()
    elif isinstance(layer, layers.Softmax):
        ref = reference.Softmax()
    else:  # pragma: no cover - a new layer type needs a mapping here
        raise TypeError(f"no reference layer for {layer!r}")
    return ref
