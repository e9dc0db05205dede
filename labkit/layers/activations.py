"""Elementwise activations (the tutorial's Activation and its family) and Softmax."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.special import expit

from labkit.layers.base import Layer


class Activation(Layer):
    """The tutorial's layer: ``forward = activation(x)``, ``backward = g * activation_prime(x)``."""

    def __init__(
        self,
        activation: Callable[[np.ndarray], np.ndarray],
        activation_prime: Callable[[np.ndarray], np.ndarray],
    ) -> None:
        super().__init__()
        self.activation = activation
        self.activation_prime = activation_prime

    def forward(self, input: np.ndarray) -> np.ndarray:
        self.input = input
        return self.activation(input)

    def backward(
        self, output_gradient: np.ndarray, learning_rate: float | None = None
    ) -> np.ndarray:
        return output_gradient * self.activation_prime(self.input)


class Sigmoid(Activation):
    """Logistic sigmoid; backward reuses the cached output: ``s' = s (1 - s)``."""

    replicable = True  # per-call state only by rebinding attributes (see Layer)

    def __init__(self) -> None:
        super().__init__(expit, lambda x: expit(x) * (1 - expit(x)))

    def config(self) -> dict[str, Any]:
        return {}

    def forward(self, input: np.ndarray) -> np.ndarray:
        self.input = input
        self.output = expit(input)
        return self.output

    def backward(
        self, output_gradient: np.ndarray, learning_rate: float | None = None
    ) -> np.ndarray:
        s = self.output
        return output_gradient * (s * (1 - s))


class Tanh(Activation):
    """Hyperbolic tangent; backward reuses the cached output: ``t' = 1 - t^2``."""

    replicable = True  # per-call state only by rebinding attributes (see Layer)

    def __init__(self) -> None:
        super().__init__(np.tanh, lambda x: 1 - np.tanh(x) ** 2)

    def config(self) -> dict[str, Any]:
        return {}

    def forward(self, input: np.ndarray) -> np.ndarray:
        self.input = input
        self.output = np.tanh(input)
        return self.output

    def backward(
        self, output_gradient: np.ndarray, learning_rate: float | None = None
    ) -> np.ndarray:
        t = self.output
        return output_gradient * (1 - t * t)


class ReLU(Activation):
    """``max(x, 0)``; its derivative at exactly 0 is taken as 0 (a kink for the checker)."""

    replicable = True  # per-call state only by rebinding attributes (see Layer)

    def __init__(self) -> None:
        super().__init__(lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(x.dtype))

    def config(self) -> dict[str, Any]:
        return {}

    def backward(
        self, output_gradient: np.ndarray, learning_rate: float | None = None
    ) -> np.ndarray:
        return output_gradient * (self.input > 0)


def softmax(x: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over all axes but the first (the batch)."""
    flat = x.reshape(x.shape[0], -1)
    e = np.exp(flat - flat.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).reshape(x.shape)


class Softmax(Layer):
    """Softmax over each sample (all non-batch axes, so ``(N, n)`` and ``(N, n, 1)`` both work).

    Backward applies the full Jacobian without building it:
    ``dx = y * (g - sum(g * y))`` per sample.
    """

    replicable = True  # per-call state only by rebinding attributes (see Layer)

    def config(self) -> dict[str, Any]:
        return {}

    def forward(self, input: np.ndarray) -> np.ndarray:
        if getattr(input, "ndim", 0) < 2:
            raise ValueError(
                f"{self.describe()}: expected input of shape (N, n), got "
                f"{getattr(input, 'shape', type(input).__name__)}"
            )
        self.input = input
        self.output = softmax(input)
        return self.output

    def backward(
        self, output_gradient: np.ndarray, learning_rate: float | None = None
    ) -> np.ndarray:
        y = self.output.reshape(self.output.shape[0], -1)
        g = output_gradient.reshape(y.shape)
        return (y * (g - (g * y).sum(axis=1, keepdims=True))).reshape(self.output.shape)
