"""The tutorial's layers as a student writes them, and wrong versions of them.

The correct layers are the tutorial's code (TheIndependentCode/Neural-Network) nearly
verbatim: plain classes, not labkit's, working on ONE sample (``(d, h, w)`` images,
``(n, 1)`` columns), parameters as attributes, SGD applied inside
``backward(output_gradient, learning_rate)``. Each mutant subclasses one of them and
carries ONE realistic bug; its docstring says which tensor (``"input"`` or the
parameter's attribute name) the bug corrupts, and ``FAULTY`` records it for the tests.
"""

# ruff: noqa: NPY002 -- the tutorial draws its weights from numpy's global generator

from __future__ import annotations

import copy

import numpy as np
from scipy import signal

# -- the tutorial's layers ----------------------------------------------------------------


class Layer:
    def __init__(self):
        self.input = None
        self.output = None

    def forward(self, input):
        pass

    def backward(self, output_gradient, learning_rate):
        pass


class Dense(Layer):
    def __init__(self, input_size, output_size):
        self.weights = np.random.randn(output_size, input_size)
        self.bias = np.random.randn(output_size, 1)

    def forward(self, input):
        self.input = input
        return np.dot(self.weights, self.input) + self.bias

    def backward(self, output_gradient, learning_rate):
        weights_gradient = np.dot(output_gradient, self.input.T)
        input_gradient = np.dot(self.weights.T, output_gradient)
        self.weights -= learning_rate * weights_gradient
        self.bias -= learning_rate * output_gradient
        return input_gradient


class Convolutional(Layer):
    def __init__(self, input_shape, kernel_size, depth):
        input_depth, input_height, input_width = input_shape
        self.depth = depth
        self.input_shape = input_shape
        self.input_depth = input_depth
        self.output_shape = (depth, input_height - kernel_size + 1, input_width - kernel_size + 1)
        self.kernels_shape = (depth, input_depth, kernel_size, kernel_size)
        self.kernels = np.random.randn(*self.kernels_shape)
        self.biases = np.random.randn(*self.output_shape)

    def forward(self, input):
        self.input = input
        self.output = np.copy(self.biases)
        for i in range(self.depth):
            for j in range(self.input_depth):
                self.output[i] += signal.correlate2d(self.input[j], self.kernels[i, j], "valid")
        return self.output

    def backward(self, output_gradient, learning_rate):
        kernels_gradient = np.zeros(self.kernels_shape)
        input_gradient = np.zeros(self.input_shape)
        for i in range(self.depth):
            for j in range(self.input_depth):
                kernels_gradient[i, j] = signal.correlate2d(
                    self.input[j], output_gradient[i], "valid"
                )
                input_gradient[j] += signal.convolve2d(
                    output_gradient[i], self.kernels[i, j], "full"
                )
        self.kernels -= learning_rate * kernels_gradient
        self.biases -= learning_rate * output_gradient
        return input_gradient


class Reshape(Layer):
    def __init__(self, input_shape, output_shape):
        self.input_shape = input_shape
        self.output_shape = output_shape

    def forward(self, input):
        return np.reshape(input, self.output_shape)

    def backward(self, output_gradient, learning_rate):
        return np.reshape(output_gradient, self.input_shape)


class Activation(Layer):
    def __init__(self, activation, activation_prime):
        self.activation = activation
        self.activation_prime = activation_prime

    def forward(self, input):
        self.input = input
        return self.activation(self.input)

    def backward(self, output_gradient, learning_rate):
        return np.multiply(output_gradient, self.activation_prime(self.input))


class Tanh(Activation):
    def __init__(self):
        def tanh(x):
            return np.tanh(x)

        def tanh_prime(x):
            return 1 - np.tanh(x) ** 2

        super().__init__(tanh, tanh_prime)


class Sigmoid(Activation):
    def __init__(self):
        def sigmoid(x):
            return 1 / (1 + np.exp(-x))

        def sigmoid_prime(x):
            s = sigmoid(x)
            return s * (1 - s)

        super().__init__(sigmoid, sigmoid_prime)


class ReLU(Activation):
    """Not in the tutorial; a student's first addition to it."""

    def __init__(self):
        super().__init__(lambda x: np.maximum(x, 0), lambda x: (x > 0) * 1.0)


# -- dense mutants ----------------------------------------------------------------------------


class DenseInputAfterUpdate(Dense):
    """The classic ordering bug: the input gradient is computed after
    ``self.weights -= ...``, from the updated weights. Corrupts ``input``."""

    def backward(self, output_gradient, learning_rate):
        weights_gradient = np.dot(output_gradient, self.input.T)
        self.weights -= learning_rate * weights_gradient
        self.bias -= learning_rate * output_gradient
        return np.dot(self.weights.T, output_gradient)


class DenseWeightsGradTransposed(Dense):
    """Weight gradient written ``np.dot(self.input, output_gradient.T)`` (``X dY^T``, the
    transpose of ``dY X^T``). Corrupts ``weights`` on a square layer (on another one the
    in-place update cannot broadcast and backward crashes)."""

    def backward(self, output_gradient, learning_rate):
        weights_gradient = np.dot(self.input, output_gradient.T)
        input_gradient = np.dot(self.weights.T, output_gradient)
        self.weights -= learning_rate * weights_gradient
        self.bias -= learning_rate * output_gradient
        return input_gradient


class DenseWeightsNoLearningRate(Dense):
    """The weight update forgets its factor: ``self.weights -= weights_gradient``.
    Corrupts ``weights`` (right only at learning_rate 1)."""

    def backward(self, output_gradient, learning_rate):
        weights_gradient = np.dot(output_gradient, self.input.T)
        input_gradient = np.dot(self.weights.T, output_gradient)
        self.weights -= weights_gradient
        self.bias -= learning_rate * output_gradient
        return input_gradient


class DenseBiasUpdateTransposed(Dense):
    """Bias update rebinding with a transposed column,
    ``self.bias = self.bias - learning_rate * output_gradient.T``: ``(m, 1) - (1, m)``
    broadcasts to ``(m, m)``. Corrupts ``bias`` (its shape)."""

    def backward(self, output_gradient, learning_rate):
        weights_gradient = np.dot(output_gradient, self.input.T)
        input_gradient = np.dot(self.weights.T, output_gradient)
        self.weights -= learning_rate * weights_gradient
        self.bias = self.bias - learning_rate * output_gradient.T
        return input_gradient


# -- convolution mutants ------------------------------------------------------------------------


class ConvMissingBiasUpdate(Convolutional):
    """Backward copied without its last update line: ``self.biases`` is never updated.
    Corrupts ``biases`` (its gradient is missing)."""

    def backward(self, output_gradient, learning_rate):
        kernels_gradient = np.zeros(self.kernels_shape)
        input_gradient = np.zeros(self.input_shape)
        for i in range(self.depth):
            for j in range(self.input_depth):
                kernels_gradient[i, j] = signal.correlate2d(
                    self.input[j], output_gradient[i], "valid"
                )
                input_gradient[j] += signal.convolve2d(
                    output_gradient[i], self.kernels[i, j], "full"
                )
        self.kernels -= learning_rate * kernels_gradient
        return input_gradient


class ConvBiasSummedOverDepth(Convolutional):
    """Bias update from ``output_gradient.sum(axis=0)``: the batched habit of summing axis
    0, which here is the depth axis, broadcast back over every channel. Corrupts
    ``biases`` (for depth >= 2)."""

    def backward(self, output_gradient, learning_rate):
        kernels_gradient = np.zeros(self.kernels_shape)
        input_gradient = np.zeros(self.input_shape)
        for i in range(self.depth):
            for j in range(self.input_depth):
                kernels_gradient[i, j] = signal.correlate2d(
                    self.input[j], output_gradient[i], "valid"
                )
                input_gradient[j] += signal.convolve2d(
                    output_gradient[i], self.kernels[i, j], "full"
                )
        self.kernels -= learning_rate * kernels_gradient
        self.biases -= learning_rate * output_gradient.sum(axis=0)
        return input_gradient


class ConvNoKernelFlip(Convolutional):
    """Input gradient from ``correlate2d(output_gradient[i], kernels[i, j], "full")``
    instead of ``convolve2d`` (the kernel flip forgotten). Corrupts ``input`` (k >= 2)."""

    def backward(self, output_gradient, learning_rate):
        kernels_gradient = np.zeros(self.kernels_shape)
        input_gradient = np.zeros(self.input_shape)
        for i in range(self.depth):
            for j in range(self.input_depth):
                kernels_gradient[i, j] = signal.correlate2d(
                    self.input[j], output_gradient[i], "valid"
                )
                input_gradient[j] += signal.correlate2d(
                    output_gradient[i], self.kernels[i, j], "full"
                )
        self.kernels -= learning_rate * kernels_gradient
        self.biases -= learning_rate * output_gradient
        return input_gradient


# -- activation mutants -------------------------------------------------------------------------


class SigmoidPrimePlus(Activation):
    """Sigmoid with its derivative written ``s * (1 + s)``. Corrupts ``input``."""

    def __init__(self):
        def sigmoid(x):
            return 1 / (1 + np.exp(-x))

        def sigmoid_prime(x):
            s = sigmoid(x)
            return s * (1 + s)

        super().__init__(sigmoid, sigmoid_prime)


class TanhPrimeOfInput(Activation):
    """Tanh with its derivative written ``1 - x ** 2`` (of the input, not of tanh(x)).
    Corrupts ``input``."""

    def __init__(self):
        super().__init__(np.tanh, lambda x: 1 - x**2)


class TanhInPlace(Tanh):
    """Backward multiplies the ``output_gradient`` it was given in place and returns it:
    the values are right, but the caller's array is overwritten. Corrupts ``input`` (the
    check's note)."""

    def backward(self, output_gradient, learning_rate):
        output_gradient *= self.activation_prime(self.input)
        return output_gradient


#: The tensor each mutant corrupts (as named in a check_layer report).
FAULTY: dict[type, str] = {
    DenseInputAfterUpdate: "input",
    DenseWeightsGradTransposed: "weights",
    DenseWeightsNoLearningRate: "weights",
    DenseBiasUpdateTransposed: "bias",
    ConvMissingBiasUpdate: "biases",
    ConvBiasSummedOverDepth: "biases",
    ConvNoKernelFlip: "input",
    SigmoidPrimePlus: "input",
    TanhPrimeOfInput: "input",
    TanhInPlace: "input",
}

#: The correct layer each mutant is a wrong version of.
TWIN: dict[type, type] = {
    DenseInputAfterUpdate: Dense,
    DenseWeightsGradTransposed: Dense,
    DenseWeightsNoLearningRate: Dense,
    DenseBiasUpdateTransposed: Dense,
    ConvMissingBiasUpdate: Convolutional,
    ConvBiasSummedOverDepth: Convolutional,
    ConvNoKernelFlip: Convolutional,
    SigmoidPrimePlus: Sigmoid,
    TanhPrimeOfInput: Tanh,
    TanhInPlace: Tanh,
}


def seeded(factory, seed: int):
    """``factory()`` under ``np.random.seed(seed)`` (the tutorial draws from the global
    generator), the global state restored afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        return factory()
    finally:
        np.random.set_state(state)


def correct_twin(mutant):
    """The correct tutorial layer with the mutant's parameters and state."""
    twin = copy.deepcopy(mutant)
    if TWIN[type(mutant)] in (Sigmoid, Tanh):  # their functions are the bug: rebuild
        return TWIN[type(mutant)]()
    twin.__class__ = TWIN[type(mutant)]
    return twin
