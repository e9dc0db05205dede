"""Harder mutants for the gradient checker: bugs below its old tolerances, bugs that only
show on a second call or with a learning rate, a random forward, a float16 shortcut taken
only in float32, a max-pool tie rule, a crash inside the user's backward; and correct
layers written in ways that trip a naive checker (preallocated gradients, a layer that
couples the samples of its batch, a loss fused into a layer that holds its labels).

As in ``tests/mutants.py``: every wrong layer carries ONE bug, says in its docstring what
is wrong and which tensor it corrupts (``FAULTY``), and subclasses a real labkit layer
where there is one, so :func:`correct_twin` gives the real layer with the same parameters.
``CORRECT`` lists the awkward layers that are right and must pass.
"""

from __future__ import annotations

import numpy as np
from mutants import correct_twin  # noqa: F401  (re-exported: the tests take it from here)
from scipy.signal import convolve2d, correlate2d

from labkit.layers import Convolutional, Dense, MaxPool
from labkit.layers.base import Layer

# -- tiny errors: far below the old rtol of 1e-5 ---------------------------------------


class ConvKernelOneElementOff(Convolutional):
    """The kernel gradient is right except element ``[0, 0, 0, 0]``, multiplied by
    ``1 + delta`` (``delta = 1e-6``; :func:`kernel_one_element_off` makes other deltas):
    one entry of a hand-unrolled loop that picked up a stray factor. Corrupts ``kernels``."""

    delta = 1e-6

    def backward(self, output_gradient, learning_rate=None, *, input_gradient=True):
        dx = super().backward(output_gradient, None, input_gradient=input_gradient)
        self.grads["kernels"][0, 0, 0, 0] *= 1 + self.delta
        self.sgd_update(learning_rate)
        return dx


def kernel_one_element_off(delta: float) -> type[ConvKernelOneElementOff]:
    """A :class:`ConvKernelOneElementOff` whose one element is off by ``1 + delta``."""
    return type(f"ConvKernelOneElementOff_{delta:g}", (ConvKernelOneElementOff,), {"delta": delta})


class DenseWeightsScaled(Dense):
    """The whole weights gradient scaled by ``1 + 1e-7`` (a leftover "loss scale" that is
    not quite undone). Corrupts ``weights``."""

    scale = 1 + 1e-7

    def backward(self, output_gradient, learning_rate=None):
        dx = super().backward(output_gradient, None)
        self.grads["weights"] = self.grads["weights"] * self.scale
        self.sgd_update(learning_rate)
        return dx


class DenseInputOneElementOff(Dense):
    """Input gradient right except element ``[0, 0]``, multiplied by ``1 + 1e-4``. Checked
    on tiny (scale 1e-6) and large (1e5) inputs, where a fixed absolute step misleads.
    Corrupts ``input``."""

    def backward(self, output_gradient, learning_rate=None):
        dx = super().backward(output_gradient, learning_rate)  # dx comes before the update
        dx[0, 0] *= 1 + 1e-4
        return dx


# -- state kept across calls -------------------------------------------------------------


class DenseAccumulatesGrads(Dense):
    """Allocates ``self.grads`` once in ``__init__`` and adds to it in every backward
    (``+=``), never resetting: the first call is right, every later one returns the sum of
    all calls so far. Corrupts ``weights`` (and ``bias``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.grads = {"weights": np.zeros(self.weights.shape), "bias": np.zeros(self.bias.shape)}

    def backward(self, output_gradient, learning_rate=None):
        g = self._as_rows(output_gradient, self.output_size, "output gradient")
        self.grads["weights"] += g.T @ self.input
        self.grads["bias"] += g.sum(axis=0)
        dx = (g @ self.weights).reshape(self._input_shape)
        self.sgd_update(learning_rate)
        return dx


class ConvPrivateAccumulator(Convolutional):
    """Keeps a private running sum ``self._dk`` (zeros in ``__init__``), adds each call's
    kernel gradient to it and hands out a copy as ``grads["kernels"]``: rebinding grads
    hides the accumulation from a checker that only clears ``grads``. Corrupts
    ``kernels``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._dk = np.zeros(self.kernels.shape)

    def backward(self, output_gradient, learning_rate=None, *, input_gradient=True):
        dx = super().backward(output_gradient, None, input_gradient=input_gradient)
        self._dk += self.grads["kernels"]
        self.grads["kernels"] = self._dk.copy()
        self.sgd_update(learning_rate)
        return dx


# -- the learning-rate path --------------------------------------------------------------


class DenseUpdatesBeforeInputGradient(Dense):
    """Applies the SGD update FIRST and then computes the input gradient from the updated
    weights: right without a learning rate, wrong with one (the gradient handed to the
    layer below depends on ``learning_rate``). Corrupts ``input``."""

    def backward(self, output_gradient, learning_rate=None):
        g = self._as_rows(output_gradient, self.output_size, "output gradient")
        self.grads["weights"] = g.T @ self.input
        self.grads["bias"] = g.sum(axis=0)
        self.sgd_update(learning_rate)
        return (g @ self.weights).reshape(self._input_shape)


class DenseUpdateForgetsLearningRate(Dense):
    """With a learning rate, updates ``p -= grad`` instead of ``p -= lr * grad`` (the lr
    factor is forgotten); the gradients themselves are right. Corrupts ``weights`` (and
    ``bias``: the update of every parameter is wrong)."""

    def backward(self, output_gradient, learning_rate=None):
        dx = super().backward(output_gradient, None)
        if learning_rate is not None:
            for key, param in self.params.items():
                param -= self.grads[key]
        return dx


# -- forward ---------------------------------------------------------------------------


class NoisyDense(Dense):
    """Dropout left on: forward multiplies its output by a fresh random mask (keep-prob
    0.9, kept values scaled by 1/0.9, from an unseeded ``np.random.default_rng()``) on
    every call; backward uses the last mask. No finite difference of such a forward means
    anything. Corrupts ``forward`` (it is not deterministic)."""

    keep = 0.9

    def forward(self, input):
        out = super().forward(input)
        rng = np.random.default_rng()
        self._mask = (rng.random(out.shape) < self.keep) / self.keep
        return out * self._mask

    def backward(self, output_gradient, learning_rate=None):
        return super().backward(output_gradient * self._mask, learning_rate)


# -- dtype -------------------------------------------------------------------------------


class DenseFloat16Input(Dense):
    """When the output gradient is float32, computes the input gradient through float16
    (a "fast path" of three significant digits); the float64 path is right, so a check
    done only in float64 never sees it. Corrupts ``input`` (in the layer's own float32)."""

    def backward(self, output_gradient, learning_rate=None):
        dx = super().backward(output_gradient, None)
        if output_gradient.dtype == np.float32:
            g = self._as_rows(output_gradient, self.output_size, "output gradient")
            half = g.astype(np.float16) @ self.weights.astype(np.float16)
            dx = half.astype(np.float32).reshape(self._input_shape)
        self.sgd_update(learning_rate)
        return dx


# -- pooling ----------------------------------------------------------------------------


class MaxPoolGradientToAllTies(MaxPool):
    """Routes each window's gradient to EVERY element equal to the window's maximum
    (``g * (x == max)``): right when the maximum is unique, but two tied elements get the
    whole gradient each, twice too much jointly (moving both by eps moves the max by eps,
    not 2 eps). Corrupts ``input`` on inputs with exact ties."""

    def backward(self, output_gradient, learning_rate=None):
        p = self.pool_size
        oh, ow = self.output.shape[2:]
        dx = np.zeros_like(self.input, dtype=output_gradient.dtype)
        for a in range(p):
            for b in range(p):
                rows, cols = self._offset(a, oh), self._offset(b, ow)
                hit = self.input[:, :, rows, cols] == self.output
                dx[:, :, rows, cols] += output_gradient * hit
        return dx


# -- a crash in the user's own code ------------------------------------------------------


class DenseTypoInBackward(Dense):
    """Records the weight gradient's norm for a dashboard but reads
    ``self.grads["weigths"]`` (a typo): backward raises KeyError in the user's code. The
    checker must say so in one line naming the layer, the KeyError and this file's line.
    No tensor to blame (no report: the check raises GradcheckError); listed in ``RAISES``."""

    def backward(self, output_gradient, learning_rate=None):
        dx = super().backward(output_gradient, None)
        self.grad_norm = float(np.linalg.norm(self.grads["weigths"]))  # the typo
        self.sgd_update(learning_rate)
        return dx


# -- a layer that couples the samples of its batch: right, and wrong ----------------------


class BatchCentering(Layer):
    """CORRECT. Subtracts the batch mean, ``y = x - mean_n(x)``: every output depends on
    every sample, so samples can't be checked one at a time (nor stacked as a batch of
    perturbed copies). ``dx = g - mean_n(g)``. At batch 1 the output and gradient are 0."""

    def forward(self, input):
        self.input = input
        return input - input.mean(axis=0)

    def backward(self, output_gradient, learning_rate=None):
        self.sgd_update(learning_rate)  # no params: a no-op
        return output_gradient - output_gradient.mean(axis=0)


class BatchCenteringNoMeanGrad(BatchCentering):
    """Backward forgets the mean's own gradient and returns ``g`` unchanged (as if the
    mean were a constant). Corrupts ``input`` (at every batch size, batch 1 included)."""

    def backward(self, output_gradient, learning_rate=None):
        return output_gradient.copy()


# -- correct layers that a naive checker mishandles ------------------------------------


class ConvPreallocatedGrads(Convolutional):
    """CORRECT. The tutorial's per-sample ``correlate2d``/``convolve2d`` backward writing
    into gradient arrays allocated once in ``__init__`` (``self.grads["kernels"][...] =``,
    never rebinding them): a checker that clears ``grads`` before backward makes it raise
    KeyError. Same function as :class:`Convolutional` (both bias modes)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.grads = {
            "kernels": np.zeros(self.kernels.shape),
            "biases": np.zeros(self.biases.shape),
        }

    def backward(self, output_gradient, learning_rate=None, *, input_gradient=True):
        x, g, k = self.input, output_gradient, self.kernels
        n, d = x.shape[0], self.input_shape[0]
        self.grads["kernels"][...] = 0
        for s in range(n):
            for i in range(self.depth):
                for j in range(d):
                    self.grads["kernels"][i, j] += correlate2d(x[s, j], g[s, i], "valid")
        tied = self.bias_mode == "tied"
        self.grads["biases"][...] = g.sum(axis=(0, 2, 3)) if tied else g.sum(axis=0)
        dx = None
        if input_gradient:
            dx = np.zeros(x.shape, dtype=np.result_type(g, k))
            for s in range(n):
                for i in range(self.depth):
                    for j in range(d):
                        dx[s, j] += convolve2d(g[s, i], k[i, j], "full")
        self.sgd_update(learning_rate)
        return dx


def log_softmax(x: np.ndarray) -> np.ndarray:
    """``log(softmax(x))`` over axis 1, without overflow."""
    z = x - x.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


class FusedSoftmaxCrossEntropy(Layer):
    """CORRECT. Softmax and cross-entropy fused into a last layer that holds its one-hot
    labels ``y`` (N, C): ``forward(x)`` is each sample's loss divided by N, shape (N, 1),
    ``-sum(y * log_softmax(x), 1) / N``; ``backward(g) = g * (softmax(x) - y) / N``.
    A batch of another size than the labels' is refused with ValueError ("labels are for
    N samples"): samples can't be checked one at a time, nor stacked."""

    def __init__(self, labels: np.ndarray) -> None:
        super().__init__()
        self.labels = np.asarray(labels, dtype=np.float64)

    def _require_batch(self, x: np.ndarray) -> None:
        n = len(self.labels)
        if x.ndim != 2 or len(x) != n:
            raise ValueError(
                f"{type(self).__name__}: labels are for {n} samples, got input of shape {x.shape}"
            )

    def forward(self, input):
        self._require_batch(input)
        self.input = input
        n = len(self.labels)
        return -(self.labels * log_softmax(input)).sum(axis=1, keepdims=True) / n

    def backward(self, output_gradient, learning_rate=None):
        n = len(self.labels)
        probabilities = np.exp(log_softmax(self.input))
        self.sgd_update(learning_rate)  # no params: a no-op
        return output_gradient * (probabilities - self.labels) / n


# -- registries ------------------------------------------------------------------------

#: The tensor each wrong layer corrupts (as named in a check_layer report; "forward" for
#: a forward that is not deterministic).
FAULTY: dict[type, str] = {
    ConvKernelOneElementOff: "kernels",
    DenseWeightsScaled: "weights",
    DenseInputOneElementOff: "input",
    DenseAccumulatesGrads: "weights",
    ConvPrivateAccumulator: "kernels",
    DenseUpdatesBeforeInputGradient: "input",
    DenseUpdateForgetsLearningRate: "weights",
    NoisyDense: "forward",
    DenseFloat16Input: "input",
    MaxPoolGradientToAllTies: "input",
    BatchCenteringNoMeanGrad: "input",
}

#: Wrong layers whose check can't report: it raises GradcheckError (the layer's crash).
RAISES: tuple[type, ...] = (DenseTypoInBackward,)

#: Awkward but correct layers: every check of them must pass.
CORRECT: tuple[type, ...] = (ConvPreallocatedGrads, BatchCentering, FusedSoftmaxCrossEntropy)


def faulty(layer) -> str:
    """``FAULTY`` for the layer's class or the nearest base listed (the factory's subclasses)."""
    return next(FAULTY[c] for c in type(layer).__mro__ if c in FAULTY)
