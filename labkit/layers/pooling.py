"""Max pooling over square windows, vectorized as strided slices of the whole batch."""

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

    The max is separable: first over the p columns of a window in every input row
    (``row_max``), then over p of those row maxima. That is 2(p - 1) elementwise maxima
    of the batch instead of p*p - 1, and backward retraces the two steps in reverse.
    Every array keeps the input's memory layout (channels-last after a convolution).
    """

    replicable = True  # per-call state only by rebinding attributes (see Layer)

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

    def _offset(self, offset: int, count: int) -> slice:
        """The element at ``offset`` of each of ``count`` windows along one axis."""
        return slice(offset, offset + self.stride * count, self.stride)

    def _along(self, axis: int, offset: int, count: int) -> tuple[slice, ...]:
        """``_offset`` as an index of a 4-D array along ``axis`` (2: rows, 3: columns)."""
        index = [slice(None)] * 4
        index[axis] = self._offset(offset, count)
        return tuple(index)

    def _covered(self, input: np.ndarray, oh: int, ow: int) -> np.ndarray:
        """The rows and columns some window reads (a view)."""
        reach = self.pool_size - self.stride  # how far the last window sticks out
        return input[:, :, : self.stride * oh + reach, : self.stride * ow + reach]

    def _max_over(self, x: np.ndarray, axis: int, count: int) -> np.ndarray:
        """Max of the p window elements along ``axis``; order="K" keeps x's memory layout."""
        result = x[self._along(axis, 0, count)].copy(order="K")
        for offset in range(1, self.pool_size):
            np.maximum(result, x[self._along(axis, offset, count)], out=result)
        return result

    def forward(self, input: np.ndarray) -> np.ndarray:
        shape = getattr(input, "shape", ())
        p = self.pool_size
        if len(shape) != 4 or shape[2] < p or shape[3] < p:
            raise ValueError(
                f"{self.describe()}: expected input of shape (N, C, H, W) with H, W >= {p}, "
                f"got {tuple(shape)}"
            )
        _, oh, ow = self.output_shape(shape[1:])
        self.input = input
        self.row_max = self._max_over(self._covered(input, oh, ow), axis=3, count=ow)
        self.output = self._max_over(self.row_max, axis=2, count=oh)
        return self.output

    def backward(
        self, output_gradient: np.ndarray, learning_rate: float | None = None
    ) -> np.ndarray:
        if output_gradient.shape != self.output.shape:
            raise ValueError(
                f"{self.describe()}: expected output gradient of shape {self.output.shape}, "
                f"got {output_gradient.shape}"
            )
        # The gradient in the output's memory layout: every elementwise step below then
        # runs over operands laid out alike (mixed layouts make NumPy loop 4 values at a time).
        grad = np.empty_like(self.output, dtype=output_gradient.dtype)
        grad[...] = output_gradient
        oh, ow = self.output.shape[2:]
        covered = self._covered(self.input, oh, ow)
        row_grad = self._route(grad, self.row_max, self.output, axis=2)
        covered_grad = self._route(row_grad, covered, self.row_max, axis=3)
        if covered.shape == self.input.shape:
            return covered_grad
        input_gradient = np.zeros_like(self.input, dtype=grad.dtype)
        input_gradient[:, :, : covered.shape[2], : covered.shape[3]] = covered_grad
        return input_gradient

    def _route(
        self, grad: np.ndarray, source: np.ndarray, maxima: np.ndarray, axis: int
    ) -> np.ndarray:
        """Send ``grad`` back to the first of the p ``source`` elements equal to ``maxima``.

        Offsets are visited in order and ``grad`` (overwritten) keeps the gradient of the
        windows whose maximum hasn't been met yet, so forward stores no per-window index.
        The last offset takes what is left: if none before it held the max, it does.
        """
        p, count = self.pool_size, grad.shape[axis]
        overlapping = self.stride < p  # an element can sit in several windows: accumulate
        tiled = self.stride == p  # every element sits in exactly one window: no zeroing
        routed_grad = (np.empty_like if tiled else np.zeros_like)(source, dtype=grad.dtype)
        unrouted = grad
        for offset in range(p):
            index = self._along(axis, offset, count)
            last = offset == p - 1
            if overlapping:
                routed = unrouted if last else unrouted * (source[index] == maxima)
                routed_grad[index] += routed
            elif last:
                routed_grad[index] = unrouted
            else:  # straight into the gradient
                routed = np.multiply(unrouted, source[index] == maxima, out=routed_grad[index])
            if not last:
                np.subtract(unrouted, routed, out=unrouted)  # exact: x - x = 0, x - 0 = x
        return routed_grad
