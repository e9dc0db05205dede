"""The tutorial's naive per-sample layers, kept as a slow oracle and a benchmark baseline.

Each layer takes ONE sample in the tutorial's layout (``(d, h, w)`` images, ``(n, 1)``
column vectors) and loops over channels and kernels with ``scipy.signal``. They follow
the same contract as the fast layers (``params``/``grads``, optional ``learning_rate``)
so tests can copy weights across and compare forward outputs and every gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import signal

from labkit.layers.base import Layer


class Convolutional(Layer):
    """The tutorial's convolution: correlate2d forward, correlate2d/convolve2d backward."""

    def __init__(self, input_shape, kernel_size, depth, *, bias="untied", rng=None) -> None:
        super().__init__()
        input_depth, input_height, input_width = input_shape
        self.depth = depth
        self.input_shape = tuple(input_shape)
        self.input_depth = input_depth
        self.bias_mode = bias
        self.out_shape = (depth, input_height - kernel_size + 1, input_width - kernel_size + 1)
        rng = np.random.default_rng(rng)
        self.params["kernels"] = rng.standard_normal((depth, input_depth, kernel_size, kernel_size))
        bias_shape = self.out_shape if bias == "untied" else (depth,)
        self.params["biases"] = rng.standard_normal(bias_shape)

    def forward(self, input):
        self.input = input
        kernels, biases = self.params["kernels"], self.params["biases"]
        if self.bias_mode == "untied":
            output = np.copy(biases)
        else:
            output = np.ones(self.out_shape) * biases[:, None, None]
        for i in range(self.depth):
            for j in range(self.input_depth):
                output[i] += signal.correlate2d(self.input[j], kernels[i, j], "valid")
        return output

    def backward(self, output_gradient, learning_rate=None):
        kernels = self.params["kernels"]
        kernels_gradient = np.zeros(kernels.shape)
        input_gradient = np.zeros(self.input_shape)
        for i in range(self.depth):
            for j in range(self.input_depth):
                kernels_gradient[i, j] = signal.correlate2d(
                    self.input[j], output_gradient[i], "valid"
                )
                input_gradient[j] += signal.convolve2d(output_gradient[i], kernels[i, j], "full")
        self.grads["kernels"] = kernels_gradient
        if self.bias_mode == "untied":
            self.grads["biases"] = np.array(output_gradient, dtype=float)
        else:
            self.grads["biases"] = output_gradient.sum(axis=(1, 2))
        self.sgd_update(learning_rate)
        return input_gradient


class Dense(Layer):
    """The tutorial's dense layer on a column vector: ``Y = W X + B``."""

    def __init__(self, input_size, output_size, *, rng=None) -> None:
        super().__init__()
        rng = np.random.default_rng(rng)
        self.params["weights"] = rng.standard_normal((output_size, input_size))
        self.params["bias"] = rng.standard_normal((output_size, 1))

    def forward(self, input):
        self.input = input
        return np.dot(self.params["weights"], self.input) + self.params["bias"]

    def backward(self, output_gradient, learning_rate=None):
        self.grads["weights"] = np.dot(output_gradient, self.input.T)
        self.grads["bias"] = np.array(output_gradient, dtype=float)
        input_gradient = np.dot(self.params["weights"].T, output_gradient)
        self.sgd_update(learning_rate)
        return input_gradient


class MaxPool(Layer):
    """Max pooling with explicit loops over channels and windows (first max wins ties)."""

    def __init__(self, pool_size=2, stride=None) -> None:
        super().__init__()
        self.pool_size = pool_size
        self.stride = stride or pool_size

    def forward(self, input):
        self.input = input
        p, s = self.pool_size, self.stride
        depth, height, width = input.shape
        out_h, out_w = (height - p) // s + 1, (width - p) // s + 1
        output = np.zeros((depth, out_h, out_w))
        self.argmax = np.zeros((depth, out_h, out_w, 2), dtype=int)
        for c in range(depth):
            for y in range(out_h):
                for x in range(out_w):
                    window = input[c, y * s : y * s + p, x * s : x * s + p]
                    a, b = np.unravel_index(np.argmax(window), window.shape)
                    output[c, y, x] = window[a, b]
                    self.argmax[c, y, x] = (y * s + a, x * s + b)
        return output

    def backward(self, output_gradient, learning_rate=None):
        input_gradient = np.zeros(self.input.shape)
        depth, out_h, out_w = output_gradient.shape
        for c in range(depth):
            for y in range(out_h):
                for x in range(out_w):
                    a, b = self.argmax[c, y, x]
                    input_gradient[c, a, b] += output_gradient[c, y, x]
        return input_gradient


class Reshape(Layer):
    """The tutorial's reshape of one sample."""

    def __init__(self, input_shape, output_shape) -> None:
        super().__init__()
        self.input_shape = input_shape
        self.out_shape = output_shape

    def forward(self, input):
        return np.reshape(input, self.out_shape)

    def backward(self, output_gradient, learning_rate=None):
        return np.reshape(output_gradient, self.input_shape)


class Activation(Layer):
    """The tutorial's activation layer."""

    def __init__(self, activation, activation_prime) -> None:
        super().__init__()
        self.activation = activation
        self.activation_prime = activation_prime

    def forward(self, input):
        self.input = input
        return self.activation(self.input)

    def backward(self, output_gradient, learning_rate=None):
        return np.multiply(output_gradient, self.activation_prime(self.input))


class Sigmoid(Activation):
    def __init__(self) -> None:
        def sigmoid(x):
            return 1 / (1 + np.exp(-x))

        def sigmoid_prime(x):
            s = sigmoid(x)
            return s * (1 - s)

        super().__init__(sigmoid, sigmoid_prime)


class Tanh(Activation):
    def __init__(self) -> None:
        super().__init__(np.tanh, lambda x: 1 - np.tanh(x) ** 2)


class ReLU(Activation):
    def __init__(self) -> None:
        super().__init__(lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(float))


class Softmax(Layer):
    """The tutorial's softmax on a column vector, with its explicit Jacobian."""

    def forward(self, input):
        tmp = np.exp(input - np.max(input))
        self.output = tmp / np.sum(tmp)
        return self.output

    def backward(self, output_gradient, learning_rate=None):
        n = np.size(self.output)
        tmp = np.tile(self.output, n)
        return np.dot(tmp * (np.identity(n) - np.transpose(tmp)), output_gradient)


def train_step(
    layers: Sequence[Layer], x_batch: np.ndarray, y_batch: np.ndarray, loss_prime, learning_rate
) -> None:
    """One minibatch step with the tutorial's per-sample layers: a loop over the samples.

    Every sample sees the same weights: the per-sample gradients are summed and the
    update ``p -= learning_rate * sum / N`` is applied once, after the loop.
    """
    scale = 1.0 / len(x_batch)
    totals = [{name: np.zeros_like(p) for name, p in layer.params.items()} for layer in layers]
    for x, y in zip(x_batch, y_batch, strict=True):
        output = x
        for layer in layers:
            output = layer.forward(output)
        grad = loss_prime(y, output)
        for layer in reversed(layers):
            grad = layer.backward(grad)
        for layer, total in zip(layers, totals, strict=True):
            for name in total:
                total[name] += layer.grads[name]
    for layer, total in zip(layers, totals, strict=True):
        layer.grads = {name: value * scale for name, value in total.items()}
        layer.sgd_update(learning_rate)
