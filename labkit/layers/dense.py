"""Fully connected layer: ``Y = X W^T + b`` over a batch of row vectors."""

from __future__ import annotations

from typing import Any

import numpy as np

from labkit.layers.base import Layer, glorot_uniform, make_rng


class Dense(Layer):
    """Fully connected: ``weights`` is ``(out, in)`` as in the tutorial, ``bias`` is ``(out,)``.

    Takes ``(N, input_size)``, or the tutorial's column layout ``(N, input_size, 1)``, and
    returns the output in the same layout.
    """

    replicable = True  # per-call state only by rebinding attributes (see Layer)

    def __init__(
        self,
        input_size: int,
        output_size: int,
        *,
        dtype: np.dtype | type = np.float32,
        rng: np.random.Generator | int | None = None,
    ) -> None:
        super().__init__()
        self.input_size = int(input_size)
        self.output_size = int(output_size)
        rng = make_rng(rng)
        self.params["weights"] = glorot_uniform(
            (self.output_size, self.input_size), self.input_size, self.output_size, rng, dtype
        )
        self.params["bias"] = np.zeros(self.output_size, dtype=dtype)

    @property
    def weights(self) -> np.ndarray:
        return self.params["weights"]

    @property
    def bias(self) -> np.ndarray:
        return self.params["bias"]

    def config(self) -> dict[str, Any]:
        return {"input_size": self.input_size, "output_size": self.output_size}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.output_size, 1) if len(input_shape) == 2 else (self.output_size,)

    def _as_rows(self, x: np.ndarray, size: int, what: str) -> np.ndarray:
        """View ``(N, size)`` or ``(N, size, 1)`` as ``(N, size)``; anything else is an error."""
        shape = getattr(x, "shape", ())
        if len(shape) == 2 and shape[1] == size or len(shape) == 3 and shape[1:] == (size, 1):
            return x.reshape(shape[0], size)
        raise ValueError(
            f"{self.describe()}: expected {what} of shape (N, {size}) or (N, {size}, 1), "
            f"got {tuple(shape)}"
        )

    def forward(self, input: np.ndarray) -> np.ndarray:
        x = self._as_rows(input, self.input_size, "input")
        self._input_shape = input.shape
        self.input = x
        out = x @ self.weights.T
        out += self.bias
        return out[:, :, None] if input.ndim == 3 else out

    def backward(
        self, output_gradient: np.ndarray, learning_rate: float | None = None
    ) -> np.ndarray:
        g = self._as_rows(output_gradient, self.output_size, "output gradient")
        self.grads["weights"] = g.T @ self.input
        self.grads["bias"] = g.sum(axis=0)
        input_gradient = (g @ self.weights).reshape(self._input_shape)
        self.sgd_update(learning_rate)
        return input_gradient
