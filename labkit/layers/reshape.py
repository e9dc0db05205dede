"""Shape-only layers: Reshape (the tutorial's) and Flatten."""

from __future__ import annotations

from typing import Any

import numpy as np

from labkit.layers.base import Layer, check_input

SHAPE_ONLY = ("Reshape", "Flatten")  # this module's layers: their input's values, rearranged


class Reshape(Layer):
    """Reshape each sample from ``input_shape`` to ``output_shape``; backward undoes it."""

    replicable = True  # per-call state only by rebinding attributes (see Layer)

    def __init__(self, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.input_shape = tuple(int(v) for v in input_shape)
        self.out_shape = tuple(int(v) for v in output_shape)
        if np.prod(self.input_shape) != np.prod(self.out_shape):
            raise ValueError(
                f"Reshape: cannot reshape {self.input_shape} into {self.out_shape} "
                "(different sizes)"
            )

    def config(self) -> dict[str, Any]:
        return {"input_shape": self.input_shape, "output_shape": self.out_shape}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.out_shape

    def forward(self, input: np.ndarray) -> np.ndarray:
        check_input(self, input, self.input_shape)
        return input.reshape((input.shape[0],) + self.out_shape)

    def backward(
        self, output_gradient: np.ndarray, learning_rate: float | None = None
    ) -> np.ndarray:
        check_input(self, output_gradient, self.out_shape)
        return output_gradient.reshape((output_gradient.shape[0],) + self.input_shape)


class Flatten(Layer):
    """``(N, ...)`` to ``(N, prod(...))``; remembers the input shape for backward."""

    replicable = True  # per-call state only by rebinding attributes (see Layer)

    def config(self) -> dict[str, Any]:
        return {}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (int(np.prod(input_shape)),)

    def forward(self, input: np.ndarray) -> np.ndarray:
        if getattr(input, "ndim", 0) < 1:
            raise ValueError(f"{self.describe()}: expected a batch (N, ...), got a scalar")
        self._input_shape = input.shape
        return input.reshape(input.shape[0], -1)

    def backward(
        self, output_gradient: np.ndarray, learning_rate: float | None = None
    ) -> np.ndarray:
        return output_gradient.reshape(self._input_shape)
