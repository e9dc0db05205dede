"""A zoo of deliberately wrong layers: each one carries ONE realistic backward (or forward)
bug, so the gradient checker can be shown to catch it and to blame the right tensor.

Every mutant subclasses a real labkit layer and keeps its constructor, so
:func:`correct_twin` can turn a mutant into the real layer with the very same parameters.
Each docstring says what is wrong and which tensor (``"input"`` or a ``params`` name) the
bug corrupts; ``FAULTY`` records the latter for the tests.
"""

from __future__ import annotations

import copy

import numpy as np
from scipy.signal import convolve2d, correlate2d

from labkit.layers import Convolutional, Dense, MaxPool, ReLU, Sigmoid, Softmax, Tanh
from labkit.layers import softmax as softmax_fn
from labkit.losses import Loss, softmax_cross_entropy

# -- convolution ----------------------------------------------------------------------


class ConvNoKernelFlip(Convolutional):
    """Input gradient computed as a full *correlation* of dY with K instead of a full
    *convolution* (the kernel flip is forgotten). Corrupts ``input`` (for k >= 2)."""

    def backward(self, output_gradient, learning_rate=None, *, input_gradient=True):
        super().backward(output_gradient, None, input_gradient=False)
        n = output_gradient.shape[0]
        d = self.input_shape[0]
        dx = np.zeros((n, *self.input_shape), dtype=output_gradient.dtype)
        for s in range(n):
            for i in range(self.depth):
                for j in range(d):
                    dx[s, j] += correlate2d(output_gradient[s, i], self.kernels[i, j], "full")
        self.sgd_update(learning_rate)
        return dx


class ConvKernelGradFlipped(Convolutional):
    """Kernel gradient computed with ``convolve2d`` (flipped) where the forward pass is a
    correlation: ``dK[i, j] = X[j] * dY[i]`` instead of ``X[j] (x) dY[i]``. Corrupts
    ``kernels`` (for k >= 2)."""

    def backward(self, output_gradient, learning_rate=None, *, input_gradient=True):
        dx = super().backward(output_gradient, None, input_gradient=input_gradient)
        dk = np.zeros_like(self.grads["kernels"])
        x = self.input
        for s in range(x.shape[0]):
            for i in range(self.depth):
                for j in range(self.input_shape[0]):
                    dk[i, j] += convolve2d(x[s, j], output_gradient[s, i], "valid")
        self.grads["kernels"] = dk
        self.sgd_update(learning_rate)
        return dx


class ConvMissingBiasGrad(Convolutional):
    """Backward copied from the tutorial without its bias line: ``grads["biases"]`` is
    never set. Corrupts ``biases`` (the gradient is missing)."""

    def backward(self, output_gradient, learning_rate=None, *, input_gradient=True):
        dx = super().backward(output_gradient, None, input_gradient=input_gradient)
        del self.grads["biases"]
        if learning_rate is not None:  # the kernels still learn; the biases never do
            self.params["kernels"] -= learning_rate * self.grads["kernels"]
        return dx


class ConvBiasFirstSample(Convolutional):
    """Bias gradient taken from sample 0 only (the per-sample tutorial code ported to a
    batch without summing over it). Corrupts ``biases`` when the batch has >= 2 samples."""

    def backward(self, output_gradient, learning_rate=None, *, input_gradient=True):
        dx = super().backward(output_gradient, None, input_gradient=input_gradient)
        first = output_gradient[0]
        self.grads["biases"] = first if self.bias_mode == "untied" else first.sum(axis=(1, 2))
        self.sgd_update(learning_rate)
        return dx


class ConvTiedBiasWrongAxis(Convolutional):
    """Tied bias gradient summed as if the gradient were channels-last: over axes
    (0, 1, 2) of ``(N, depth, OH, OW)``, leaving the width axis instead of the channel
    axis. Corrupts ``biases`` (wrong values when OW == depth, wrong shape otherwise)."""

    def backward(self, output_gradient, learning_rate=None, *, input_gradient=True):
        dx = super().backward(output_gradient, None, input_gradient=input_gradient)
        self.grads["biases"] = output_gradient.sum(axis=(0, 1, 2))
        self.sgd_update(learning_rate)
        return dx


# -- dense ------------------------------------------------------------------------------


class DenseInputScaled(Dense):
    """Input gradient scaled by 1.001 (a tiny constant error, e.g. a stray momentum or
    label-smoothing factor). Corrupts ``input``."""

    def backward(self, output_gradient, learning_rate=None):
        return super().backward(output_gradient, learning_rate) * 1.001


class DenseTransposedWeightGrad(Dense):
    """Weight gradient computed as ``X^T dY`` (shape ``(in, out)``) instead of ``dY^T X``
    (``(out, in)``). Corrupts ``weights``: wrong values on a square layer, wrong shape on
    a non-square one."""

    def backward(self, output_gradient, learning_rate=None):
        dx = super().backward(output_gradient, None)
        g = output_gradient.reshape(output_gradient.shape[0], self.output_size)
        self.grads["weights"] = self.input.T @ g
        self.sgd_update(learning_rate)
        return dx


class DenseInputUsesWT(Dense):
    """Input gradient computed as ``dY W^T`` instead of ``dY W`` (the transpose is put on
    the wrong side; shapes only agree on a square layer). Corrupts ``input``."""

    def backward(self, output_gradient, learning_rate=None):
        super().backward(output_gradient, None)
        g = output_gradient.reshape(output_gradient.shape[0], self.output_size)
        self.sgd_update(learning_rate)
        return (g @ self.weights.T).reshape(self._input_shape)


class DenseBiasWrongAxis(Dense):
    """Bias gradient summed over the output axis instead of the batch axis
    (``g.sum(axis=1)``, shape ``(N,)``). Corrupts ``bias``: wrong values when
    ``N == output_size``, wrong shape otherwise."""

    def backward(self, output_gradient, learning_rate=None):
        dx = super().backward(output_gradient, None)
        g = output_gradient.reshape(output_gradient.shape[0], self.output_size)
        self.grads["bias"] = g.sum(axis=1)
        self.sgd_update(learning_rate)
        return dx


class DenseStaleInput(Dense):
    """Caches the input of its FIRST forward and never updates it, so backward builds the
    weight gradient from stale data. Corrupts ``weights`` (the input and bias gradients
    don't read the cached input)."""

    def forward(self, input):
        out = super().forward(input)
        if self.__dict__.get("_first_input") is None:
            self._first_input = self.input
        self.input = self._first_input
        return out


# -- pooling ----------------------------------------------------------------------------


class MaxPoolOffByOne(MaxPool):
    """Routes each window's gradient to the element right of its maximum (an off-by-one
    in the column index). Corrupts ``input``."""

    def backward(self, output_gradient, learning_rate=None):
        return np.roll(super().backward(output_gradient, learning_rate), 1, axis=-1)


class MaxPoolWholeWindow(MaxPool):
    """Sends each window's gradient to every element of the window (average-pool style,
    without the 1/p^2), instead of to its maximum only. Corrupts ``input``."""

    def backward(self, output_gradient, learning_rate=None):
        p = self.pool_size
        oh, ow = self.output.shape[2:]
        dx = np.zeros_like(self.input, dtype=output_gradient.dtype)
        for a in range(p):
            for b in range(p):
                dx[:, :, self._offset(a, oh), self._offset(b, ow)] += output_gradient
        return dx


# -- activations ------------------------------------------------------------------------


class SigmoidPrimePlus(Sigmoid):
    """Sigmoid derivative written ``s (1 + s)`` instead of ``s (1 - s)``. Corrupts
    ``input``."""

    def backward(self, output_gradient, learning_rate=None):
        s = self.output
        return output_gradient * (s * (1 + s))


class SigmoidPrimeOfInput(Sigmoid):
    """Sigmoid derivative evaluated on the input instead of the output: ``x (1 - x)``.
    Corrupts ``input``."""

    def backward(self, output_gradient, learning_rate=None):
        x = self.input
        return output_gradient * (x * (1 - x))


class TanhPrimeOfInput(Tanh):
    """Tanh derivative written ``1 - x^2`` (on the input) instead of ``1 - tanh(x)^2``.
    Corrupts ``input``."""

    def backward(self, output_gradient, learning_rate=None):
        return output_gradient * (1 - self.input**2)


class ReLUPassesNegative(ReLU):
    """ReLU derivative masked with ``x != 0`` instead of ``x > 0``: the gradient also
    passes where ``x < 0``. Corrupts ``input``."""

    def backward(self, output_gradient, learning_rate=None):
        return output_gradient * (self.input != 0)


class SoftmaxDiagonalJacobian(Softmax):
    """Softmax backward using only the Jacobian's diagonal, ``y (1 - y) g``, dropping the
    ``-y_i y_j`` cross terms. Corrupts ``input``."""

    def backward(self, output_gradient, learning_rate=None):
        y = self.output
        return y * (1 - y) * output_gradient


class SoftmaxInPlaceAliasing(Softmax):
    """Backward reuses the ``output_gradient`` it was given as its work buffer and returns
    it: after ``g *= y`` in place, the cross term is built from the overwritten ``g``, so
    it computes ``y g - y sum(y^2 g)`` instead of ``y g - y sum(y g)`` (and clobbers the
    caller's array). Corrupts ``input``."""

    def backward(self, output_gradient, learning_rate=None):
        y = self.output.reshape(self.output.shape[0], -1)
        g = output_gradient.reshape(y.shape)  # a view: writes land in the caller's array
        g *= y
        g -= y * (g * y).sum(axis=1, keepdims=True)
        return output_gradient


class TanhInPlace(Tanh):
    """Backward multiplies the ``output_gradient`` it was given in place and returns it:
    the returned values are right, but the caller's array (the next layer's returned
    gradient, which hooks record) is overwritten. Corrupts the caller's gradient array,
    i.e. what is reported for ``input`` of the layer above."""

    def backward(self, output_gradient, learning_rate=None):
        t = self.output
        output_gradient *= 1 - t * t
        return output_gradient


# -- losses -----------------------------------------------------------------------------


def softmax_cross_entropy_prime_no_mean(y_true, logits):
    """``softmax(z) - y`` without the ``/ N`` of the batch average that the loss value has."""
    return softmax_fn(logits) - y_true


#: A loss whose derivative forgets the batch average: every gradient in the network is N
#: times too large. Corrupts every tensor of a network check (input and all parameters).
NO_MEAN_LOSS = Loss(
    "softmax_cross_entropy_no_mean", softmax_cross_entropy, softmax_cross_entropy_prime_no_mean
)


# -- helpers ----------------------------------------------------------------------------

#: The tensor each layer mutant corrupts (as named in a check_layer report).
FAULTY: dict[type, str] = {
    ConvNoKernelFlip: "input",
    ConvKernelGradFlipped: "kernels",
    ConvMissingBiasGrad: "biases",
    ConvBiasFirstSample: "biases",
    ConvTiedBiasWrongAxis: "biases",
    DenseInputScaled: "input",
    DenseTransposedWeightGrad: "weights",
    DenseInputUsesWT: "input",
    DenseBiasWrongAxis: "bias",
    DenseStaleInput: "weights",
    MaxPoolOffByOne: "input",
    MaxPoolWholeWindow: "input",
    SigmoidPrimePlus: "input",
    SigmoidPrimeOfInput: "input",
    TanhPrimeOfInput: "input",
    ReLUPassesNegative: "input",
    SoftmaxDiagonalJacobian: "input",
    SoftmaxInPlaceAliasing: "input",
    TanhInPlace: "input",
}


def correct_twin(mutant):
    """The real labkit layer the mutant derives from, with the same parameters and state."""
    twin = copy.deepcopy(mutant)
    twin.__class__ = next(c for c in type(mutant).__mro__ if c.__module__.startswith("labkit."))
    return twin


def failing_tensors(report) -> set[str]:
    """Names of the tensors whose check failed."""
    return {check.tensor for check in report.failures}
