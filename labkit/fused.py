"""Convolution, max-pool and ReLU run as one block in training steps.

``Convolutional`` (tied bias) -> ``MaxPool(p)`` (stride p, tiling the map) -> ``ReLU`` is
the same function as the three layers one after the other, computed with fewer passes
over memory (lenet has two such runs; its one-thread training step is 1.07-1.14x as fast
as layer by layer at batch 16 and 64, inference 0.97-1.08x: ``benchmarks/bench_fused.py``):

- the convolution's im2col rows are ordered by pooling window
  (:meth:`Convolutional.im2col` with ``window=p``), so its GEMM writes the p*p elements
  of every window as p*p contiguous blocks and the pool is a max over whole blocks, not
  over strided elements;
- a bias that is not inside the GEMM is added after the pool, to a p*p-th of the values:
  ``max(z + b) = max(z) + b`` exactly, since rounding is monotonic;
- ReLU is ``max(pooled, 0)``, and one boolean mask of the conv's output (built in
  backward, so inference never pays for it) says where each window's gradient goes: to
  the first maximum of the window in row-major order (as :class:`MaxPool` routes it)
  when the pooled value is positive (as :class:`ReLU` passes it), so the backward pass
  through pool and ReLU is one multiply.

Forward values and the gradients passed on are the layers' own to the bit (tested: each
output element's dot product is the same, whatever its GEMM row). The convolution's
parameter gradients are sums over the same terms taken in window order, so they differ
from the layers' by rounding (within 1e-12 of the largest in float64); a training step
always takes this path, recorded or not, so a recorded run still trains the unrecorded
run's weights. A block fires its layers' hooks with the values the layers would have
seen (built only when a hook is there). Everything else runs layer by layer:
:func:`plan` fuses only labkit's own three classes (not subclasses, whose methods may
differ) in this order and shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from labkit import hooks
from labkit.layers import Convolutional, Layer, MaxPool, ReLU
from labkit.layers.base import check_input


def fusable(conv: Layer, pool: Layer, relu: Layer) -> bool:
    """Whether the three layers can run as one :class:`ConvPoolReLU`."""
    if type(conv) is not Convolutional or type(pool) is not MaxPool or type(relu) is not ReLU:
        return False
    _, oh, ow = conv.out_shape
    p = pool.pool_size
    return conv.bias_mode == "tied" and pool.stride == p and oh % p == 0 and ow % p == 0


class ConvPoolReLU:
    """``relu(maxpool(conv(X)))`` over a batch; fills the convolution's ``grads``.

    Shapes: X ``(N, d, h, w)``; the conv's output Z, in window order,
    ``(p*p, N, OH/p, OW/p, depth)``; the result ``(N, depth, OH/p, OW/p)``.
    """

    def __init__(self, conv: Convolutional, pool: MaxPool, relu: ReLU) -> None:
        self.conv, self.pool, self.relu = conv, pool, relu
        self.layers = (conv, pool, relu)

    def forward(self, x: np.ndarray) -> np.ndarray:
        conv, p = self.conv, self.pool.pool_size
        check_input(conv, x, conv.input_shape)  # the layer's own one-line error
        n = x.shape[0]
        depth, oh, ow = conv.out_shape
        self.cols = conv.im2col(x, window=p)
        z = (self.cols @ conv.kernel_matrix().T).reshape(p * p, n, oh // p, ow // p, depth)
        maxima = np.maximum(z[0], z[1]) if p > 1 else z[0].copy()
        for block in z[2:]:
            np.maximum(maxima, block, out=maxima)
        # max(z + b) == max(z) + b (rounding is monotonic): a p*p-th of the additions
        pooled = maxima if conv.bias_in_gemm else maxima + conv.biases
        output = np.maximum(pooled, 0).transpose(0, 3, 1, 2)
        self.z, self.maxima, self.pooled = z, maxima, pooled  # backward builds its mask
        if any(hooks.has_hooks(layer, "forward") for layer in self.layers):
            conv_output = self._conv_output()
            hooks.fire(conv, "forward", x, conv_output)
            hooks.fire(self.pool, "forward", conv_output, pooled.transpose(0, 3, 1, 2))
            hooks.fire(self.relu, "forward", pooled.transpose(0, 3, 1, 2), output)
        return output

    def _mask(self) -> np.ndarray:
        """Where each window's gradient goes, ``(p*p, N, OH/p, OW/p, depth)``: to its first
        maximum in row-major order, where the ReLU passes the pooled value (> 0)."""
        z, maxima = self.z, self.maxima
        mask = np.empty(z.shape, dtype=bool)
        unrouted = self.pooled > 0
        for block, routed in zip(z[:-1], mask[:-1], strict=True):
            np.equal(block, maxima, out=routed)
            routed &= unrouted
            unrouted ^= routed  # routed is within unrouted: clears it there, in one pass
        mask[-1] = unrouted
        return mask

    can_skip_input_gradient = True  # as the Convolutional's own backward

    def backward(
        self,
        output_gradient: np.ndarray,
        learning_rate: float | None = None,
        *,
        input_gradient: bool = True,
    ) -> np.ndarray | None:
        """Fill the conv's kernel and bias gradients (and take the tutorial's SGD step
        when given a learning rate); return dE/dX (None if not asked)."""
        conv = self.conv
        depth, oh, ow = conv.out_shape
        p = self.pool.pool_size
        shape = getattr(output_gradient, "shape", None)
        if shape is None or tuple(shape[1:]) != (depth, oh // p, ow // p) or len(shape) != 4:
            raise ValueError(
                f"{self.relu.describe()}: expected output gradient of shape "
                f"(N, {depth}, {oh // p}, {ow // p}), got "
                f"{tuple(shape) if shape is not None else type(output_gradient).__name__}"
            )
        grad = output_gradient.transpose(0, 2, 3, 1)  # channels-last, like the mask's blocks
        dz = self._mask() * grad[None]  # pool and ReLU backward: one multiply
        conv.fill_parameter_gradients(self.cols, dz.reshape(-1, depth))  # in window order
        hooked = any(hooks.has_hooks(layer, "backward") for layer in self.layers)
        dx = None
        if input_gradient or hooked:
            standard = self._standard_order(dz)  # (N, OH, OW, depth)
        if input_gradient:
            dx = conv.input_gradient_of(standard.reshape(-1, depth), len(output_gradient))
        if hooked:
            relu_gradient = output_gradient * (self.pooled.transpose(0, 3, 1, 2) > 0)
            hooks.fire(self.relu, "backward", relu_gradient, output_gradient)
            conv_gradient = standard.transpose(0, 3, 1, 2)
            hooks.fire(self.pool, "backward", conv_gradient, relu_gradient)
            hooks.fire(conv, "backward", dx, conv_gradient)
        conv.sgd_update(learning_rate)
        return dx

    def _standard_order(self, blocks: np.ndarray) -> np.ndarray:
        """Window-ordered ``(p*p, N, OH/p, OW/p, depth)`` as ``(N, OH, OW, depth)``."""
        p = self.pool.pool_size
        _, n, ph, pw, depth = blocks.shape
        windows = blocks.reshape(p, p, n, ph, pw, depth).transpose(2, 3, 0, 4, 1, 5)
        return windows.reshape(n, ph * p, pw * p, depth)

    def _conv_output(self) -> np.ndarray:
        """The convolution's own output ``(N, depth, OH, OW)``, for its hooks."""
        out = self._standard_order(self.z)
        if not self.conv.bias_in_gemm:
            out = out + self.conv.biases
        return out.transpose(0, 3, 1, 2)


def plan(layers: Sequence[Layer]) -> list:
    """The layers, with every fusable Convolutional -> MaxPool -> ReLU run as one block."""
    steps, index = [], 0
    while index < len(layers):
        if index + 3 <= len(layers) and fusable(*layers[index : index + 3]):
            steps.append(ConvPoolReLU(*layers[index : index + 3]))
            index += 3
        else:
            steps.append(layers[index])
            index += 1
    return steps
