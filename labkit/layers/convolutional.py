"""Valid cross-correlation, stride 1, vectorized over the batch with im2col + BLAS.

Its readable twin is :class:`labkit.reference.Convolutional`, the tutorial's per-sample
``scipy.signal.correlate2d`` loops: the same function, held equal to this one within
1e-10 in float64 by ``tests/test_reference_equality.py``. Read that one first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from labkit.layers.base import Layer, check_input, glorot_uniform, make_rng


class Convolutional(Layer):
    """``Y[n, i] = B[i] + sum_j correlate2d(X[n, j], K[i, j], "valid")``.

    ``input_shape = (d, h, w)``; kernels have shape ``(depth, d, k, k)``.
    ``bias="untied"`` is the tutorial's one bias per output position (shape of the
    output); ``bias="tied"`` is one bias per kernel, shape ``(depth,)``.
    The bias is added once per output channel; some copies of the tutorial add it
    once per *input* channel inside the loop, which scales it by ``d``; we don't.
    """

    replicable = True  # per-call state only by rebinding attributes (see Layer)

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        kernel_size: int,
        depth: int,
        *,
        bias: str = "untied",
        dtype: np.dtype | type = np.float32,
        rng: np.random.Generator | int | None = None,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"Convolutional: input_shape must be (d, h, w), got {input_shape}")
        d, h, w = (int(v) for v in input_shape)
        k = int(kernel_size)
        if k < 1 or k > h or k > w:
            raise ValueError(f"Convolutional: kernel_size {k} does not fit input {(d, h, w)}")
        if bias not in ("untied", "tied"):
            raise ValueError(f"Convolutional: bias must be 'untied' or 'tied', got {bias!r}")
        self.input_shape = (d, h, w)
        self.kernel_size = k
        self.depth = int(depth)
        self.bias_mode = bias
        self.out_shape = (self.depth, h - k + 1, w - k + 1)
        rng = make_rng(rng)
        self.params["kernels"] = glorot_uniform(
            (self.depth, d, k, k), d * k * k, self.depth * k * k, rng, dtype
        )
        bias_shape = self.out_shape if bias == "untied" else (self.depth,)
        self.params["biases"] = np.zeros(bias_shape, dtype=dtype)
        # The bias-in-GEMM trick, for a one-channel input with a tied bias (a network's
        # first layer): im2col gets a column of ones and the kernel matrix the biases as
        # its last column, so the GEMM adds the bias and the weight-gradient GEMM sums its
        # gradient. Adding it to, and summing it from, an (N*OH*OW, depth) array separately
        # would cost more than the layer's own GEMMs. Only im2col, kernel_matrix,
        # _add_bias and _bias_gradient here, and labkit.fused, look at this flag.
        self.bias_in_gemm = d == 1 and bias == "tied"

    can_skip_input_gradient = True  # backward(..., input_gradient=False) is supported

    @property
    def kernels(self) -> np.ndarray:
        return self.params["kernels"]

    @property
    def biases(self) -> np.ndarray:
        return self.params["biases"]

    def config(self) -> dict[str, Any]:
        return {
            "input_shape": self.input_shape,
            "kernel_size": self.kernel_size,
            "depth": self.depth,
            "bias": self.bias_mode,
        }

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.out_shape

    def im2col(self, input: np.ndarray, window: int = 1) -> np.ndarray:
        """``cols[(n, y, x), (a, b, c)] = X[n, c, y + a, x + b]`` (+ ones: ``bias_in_gemm``).

        ``window=p`` orders the rows by p x p pooling window instead (each output size a
        multiple of p): ``cols[(dy, dx, n, py, px), :]`` is row ``(n, p py + dy, p px + dx)``
        of the above, so the GEMM's output holds the p*p elements of every window as p*p
        contiguous blocks and a max-pool over them is a max of blocks
        (:mod:`labkit.fused`). Built from the same strided windows, at the same copy cost.
        """
        n = input.shape[0]
        _, oh, ow = self.out_shape
        k, p = self.kernel_size, window
        ph, pw = oh // p, ow // p
        if self.input_shape[0] == 1:
            # One channel: the k*k shifted images, copied as rows of a (k*k, N*OH*OW) buffer
            # used transposed; much faster than gathering runs of k pixels.
            rows = k * k + self.bias_in_gemm
            buffer = np.empty((rows, p, p, n, ph, pw), dtype=input.dtype)
            windows = sliding_window_view(input[:, 0], (k, k), axis=(1, 2))  # (n, oh, ow, a, b)
            windows = windows.reshape(n, ph, p, pw, p, k, k)  # (n, py, dy, px, dx, a, b)
            target = buffer[: k * k].reshape(k, k, p, p, n, ph, pw)
            target[...] = windows.transpose(5, 6, 2, 4, 0, 1, 3)
            if self.bias_in_gemm:
                buffer[-1] = 1
            return buffer.reshape(rows, -1).T
        # Channels-last windows: one gather whose innermost runs are d channels long.
        windows = sliding_window_view(input.transpose(0, 2, 3, 1), (k, k), axis=(1, 2))
        windows = windows.reshape(n, ph, p, pw, p, *windows.shape[3:])  # (.., c, a, b)
        return windows.transpose(2, 4, 0, 1, 3, 6, 7, 5).reshape(p * p * n * ph * pw, -1)

    def kernel_matrix(self) -> np.ndarray:
        """Kernels as ``(depth, (a, b, c))`` rows matching the im2col columns (the biases
        as a last column under ``bias_in_gemm``)."""
        depth = self.depth
        kernels = self.kernels.transpose(0, 2, 3, 1).reshape(depth, -1)
        if self.bias_in_gemm:
            kernels = np.concatenate([kernels, self.biases[:, None]], axis=1)
        return kernels

    def _add_bias(self, out: np.ndarray) -> None:
        """Add the biases to the channels-last output ``(N, OH, OW, depth)`` in place."""
        if self.bias_mode == "untied":
            out += self.biases.transpose(1, 2, 0)
        elif not self.bias_in_gemm:  # else the GEMM added it
            out += self.biases

    def _bias_gradient(self, output_gradient, grad, full) -> np.ndarray:
        """dE/dbiases from dY ``(N, depth, OH, OW)``, its channels-last rows ``grad`` and
        the weight-gradient GEMM ``full`` (whose last column it is under ``bias_in_gemm``)."""
        if self.bias_mode == "untied":
            return output_gradient.sum(axis=0)
        if self.bias_in_gemm:
            return full[:, -1].copy()
        return grad.sum(axis=0)  # rows of the channels-last view

    def forward(self, input: np.ndarray) -> np.ndarray:
        check_input(self, input, self.input_shape)
        self.input = input
        n = input.shape[0]
        depth, oh, ow = self.out_shape
        # The whole batch is one (N*OH*OW, k*k*d) @ (k*k*d, depth) GEMM, computed
        # channels-last and returned as an (N, depth, OH, OW) view of that memory, which
        # the next convolution reads without a transpose copy.
        self._cols = self.im2col(input)
        out = (self._cols @ self.kernel_matrix().T).reshape(n, oh, ow, depth)
        self._add_bias(out)
        return out.transpose(0, 3, 1, 2)

    def backward(
        self,
        output_gradient: np.ndarray,
        learning_rate: float | None = None,
        *,
        input_gradient: bool = True,
    ) -> np.ndarray | None:
        """Fill the kernel and bias gradients and return dE/dX.

        ``input_gradient=False`` skips dX (returns None): the first layer of a network
        being trained has no use for it, and it is the costliest part of this backward.
        """
        check_input(self, output_gradient, self.out_shape)
        n = output_gradient.shape[0]
        depth, oh, ow = self.out_shape
        grad = output_gradient.transpose(0, 2, 3, 1).reshape(n * oh * ow, depth)

        self.fill_parameter_gradients(self._cols, grad, output_gradient)

        # dX (input_gradient_of) is skipped for a network's first layer: nobody reads it.
        dx = self.input_gradient_of(grad, n) if input_gradient else None
        self.sgd_update(learning_rate)
        return dx

    def fill_parameter_gradients(
        self, cols: np.ndarray, grad: np.ndarray, output_gradient: np.ndarray | None = None
    ) -> None:
        """``grads["kernels"]`` and ``grads["biases"]`` from the im2col columns and dY as
        matching channels-last rows ``(N*OH*OW, depth)``, in whatever row order the two
        share (``output_gradient``, dY itself, is needed for an untied bias only)."""
        depth, d, k = self.depth, self.input_shape[0], self.kernel_size
        # dK[i, (a, b, c)] = sum over n, y, x of dY[n, i, y, x] X[n, c, y + a, x + b]
        full = (cols.T @ grad).T  # cols.T is contiguous for one-channel input: 3x faster
        kernels_grad = full[:, : k * k * d].reshape(depth, k, k, d)
        self.grads["kernels"] = np.ascontiguousarray(kernels_grad.transpose(0, 3, 1, 2))
        self.grads["biases"] = self._bias_gradient(output_gradient, grad, full)

    def input_gradient_of(self, grad: np.ndarray, n: int) -> np.ndarray:
        """dE/dX ``(N, d, h, w)`` from dY as channels-last rows ``(N*OH*OW, depth)``.

        dX is the full convolution of dY with K. As col2im it is k*k shifted adds of
        dY @ K[:, :, a, b]; one small GEMM per offset keeps each add's source contiguous,
        which is cheaper than padding dY and correlating it with flipped kernels.
        """
        _, oh, ow = self.out_shape
        d, h, w = self.input_shape
        k = self.kernel_size
        dx = np.zeros((n, h, w, d), dtype=np.result_type(grad, self.kernels))
        for a in range(k):
            for b in range(k):
                shifted = grad @ self.kernels[:, :, a, b]
                dx[:, a : a + oh, b : b + ow, :] += shifted.reshape(n, oh, ow, d)
        return dx.transpose(0, 3, 1, 2)
