"""What share of a serial lenet training step its GEMMs take, for ``bench_engine.py``.

The GEMMs of one step are replayed alone, on operands of the shapes and memory layouts
labkit's :class:`~labkit.layers.Convolutional` and :class:`~labkit.layers.Dense` give
them (mirrored here from those layers' code: change one, change this), and timed against
a whole serial step on the same thread. What the share leaves is the step's elementwise
work and Python: the most a faster GEMM library could not touch.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

from labkit.layers import Convolutional, Dense
from labkit.network import Network
from labkit.optim import Adam
from labkit.parallel import single_threaded_blas
from labkit.train import Trainer


def _operand(rng: np.random.Generator, shape: tuple[int, ...], transposed: bool = False):
    """A float32 array of ``shape``; ``transposed``: a transposed view of its transpose."""
    if transposed:
        return np.ascontiguousarray(rng.random(shape[::-1], dtype=np.float32)).T
    return rng.random(shape, dtype=np.float32)


def step_gemms(network: Network, batch: int) -> list[Callable[[], np.ndarray]]:
    """One closure per GEMM of a training step of ``network`` at ``batch`` samples."""
    rng = np.random.default_rng(0)
    gemms: list[Callable[[], np.ndarray]] = []
    first = True  # the first layer's input gradient is skipped in training
    for layer in network:
        if isinstance(layer, Convolutional):
            d, _, _ = layer.input_shape
            depth, oh, ow = layer.out_shape
            rows, cols = batch * oh * ow, layer.kernel_size**2 * d + layer.bias_in_gemm
            one_channel = d == 1  # its im2col is a transposed (cols, rows) buffer
            patches = _operand(rng, (rows, cols), transposed=one_channel)
            kernels = _operand(rng, (cols, depth), transposed=True)
            grad = _operand(rng, (rows, depth))
            gemms.append(lambda p=patches, k=kernels: p @ k)  # forward
            gemms.append(lambda p=patches, g=grad: p.T @ g)  # kernel gradient
            if not first:  # input gradient: one small GEMM per kernel offset
                full = rng.random((depth, d, layer.kernel_size, layer.kernel_size), np.float32)
                for a in range(layer.kernel_size):
                    for b in range(layer.kernel_size):
                        gemms.append(lambda g=grad, k=full[:, :, a, b]: g @ k)
        elif isinstance(layer, Dense):
            x = _operand(rng, (batch, layer.input_size))
            weights = _operand(rng, (layer.output_size, layer.input_size))
            grad = _operand(rng, (batch, layer.output_size))
            gemms.append(lambda x=x, w=weights: x @ w.T)  # forward
            gemms.append(lambda x=x, g=grad: g.T @ x)  # weight gradient
            gemms.append(lambda w=weights, g=grad: g @ w)  # input gradient
        else:
            continue
        first = False
    return gemms


def gemm_share(network: Network, x: np.ndarray, y: np.ndarray, repeats: int) -> dict:
    """Milliseconds of a serial step at ``len(x)`` samples and of its GEMMs, on one thread."""
    gemms = step_gemms(network, len(x))
    trainer = Trainer(network, Adam(network), batch_size=len(x), progress=False, threads=1)

    def step() -> None:
        trainer.train_step(x, y)

    def only_gemms() -> None:
        for gemm in gemms:
            gemm()

    seconds: dict[str, list[float]] = {"step": [], "gemms": []}
    with single_threaded_blas():
        for block in (step, only_gemms):
            block()  # warm-up
        for _ in range(repeats):  # alternated, so noise hits both
            for name, block in (("step", step), ("gemms", only_gemms)):
                start = time.perf_counter()
                for _ in range(10):
                    block()
                seconds[name].append((time.perf_counter() - start) / 10)
    step_ms = statistics.median(seconds["step"]) * 1e3
    gemm_ms = statistics.median(seconds["gemms"]) * 1e3
    return {"batch": len(x), "step_ms": step_ms, "gemm_ms": gemm_ms, "share": gemm_ms / step_ms}
