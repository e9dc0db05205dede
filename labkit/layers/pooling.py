"""Max pooling over square windows, vectorized as p*p strided slices of the whole batch."""

from __future__ import annotations

from typing import Any

import numpy as np

from labkit.layers.base import Layer


class MaxPool(Layer):
    """Max over ``pool_size x pool_size`` windows every ``stride`` pixels (default: pool_size).

    Takes ``(N, C, H, W)``; rows/columns that don't fill a window are dropped (Keras's
    "valid"). The gradient goes to the window's maximum. Tie rule: when several
    elements share the maximum, the first in row-major order within the window gets
    all of it (as ``np.argmax`` picks), so the gradient's sum is always preserved.
    """

    def __init__(self, pool_size: int = 2, stride: int | None = None) -> None:
        super().__init__()
        self.pool_size = int(pool_size)
        self.stride = int(stride) if stride is not None else self.pool_size
        if self.pool_size < 1 or self.stride < 1:
            raise ValueError(f"MaxPool: pool_size and stride must be >= 1, got {self}")

    def config(self) -> dict[str, Any]:
        return {"pool_size": self.pool_size, "stride": self.stride}

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        c, h, w = input_shape
        p, s = self.pool_size, self.stride
        return (c, (h - p) // s + 1, (w - p) // s + 1)

    def _window_slices(self, a: int, b: int, oh: int, ow: int) -> tuple[slice, ...]:
        """Index of the element at offset (a, b) of every window, as one strided slice."""
        s = self.stride
        return (slice(None), slice(None), slice(a, a + s * oh, s), slice(b, b + s * ow, s))

    def forward(self, input: np.ndarray) -> np.ndarray:
        shape = getattr(input, "shape", ())
        p = self.pool_size
        if len(shape) != 4 or shape[2] < p or shape[3] < p:
            raise ValueError(
                f"{self.describe()}: expected input of shape (N, C, H, W) with H, W >= {p}, "
                f"got {tuple(shape)}"
            )
        _, oh, ow = self.output_shape(shape[1:])
        # Max of p*p strided slices: elementwise over the whole batch, no window copy;
        # order="K" keeps the input's memory layout (channels-last after a convolution).
        output = input[self._window_slices(0, 0, oh, ow)].copy(order="K")
        for a in range(p):
            for b in range(p):
                if a or b:
                    np.maximum(output, input[self._window_slices(a, b, oh, ow)], out=output)
        self.input = input
        self.output = output
        return output

    def backward(
        self, output_gradient: np.ndarray, learning_rate: float | None = None
    ) -> np.ndarray:
        if output_gradient.shape != self.output.shape:
            raise ValueError(
                f"{self.describe()}: expected output gradient of shape {self.output.shape}, "
                f"got {output_gradient.shape}"
            )
        # *_like keeps the input's memory layout (channels-last after a convolution). When
        # the windows tile the input exactly, every element is written below: no zeroing.
        h, w = self.input.shape[2:]
        p, stride = self.pool_size, self.stride
        tiled = stride == p and h % p == 0 and w % p == 0
        allocate = np.empty_like if tiled else np.zeros_like
        input_gradient = allocate(self.input, dtype=output_gradient.dtype)
        self._route(output_gradient, input_gradient)
        return input_gradient

    def _route(self, output_gradient: np.ndarray, input_gradient: np.ndarray) -> None:
        """Send each window's gradient to its first maximum.

        Offsets are visited in row-major order and `unrouted` holds the gradient of the
        windows whose maximum hasn't been met yet: the first-max tie rule, with no
        per-window index stored by forward.
        """
        p = self.pool_size
        inputs, outputs = self.input, self.output
        oh, ow = outputs.shape[2:]
        unrouted = output_gradient.copy(order="K")
        overlapping = self.stride < p
        offsets = [(a, b) for a in range(p) for b in range(p)]
        for number, (a, b) in enumerate(offsets):
            index = self._window_slices(a, b, oh, ow)
            is_max = inputs[index] == outputs
            if overlapping:
                routed = unrouted * is_max
                input_gradient[index] += routed
            else:  # each input element is in one window at most: write in place
                routed = input_gradient[index]
                np.multiply(unrouted, is_max, out=routed)
            if number < len(offsets) - 1:
                unrouted -= routed  # exact: x - x = 0 where routed, x - 0 = x elsewhere
