"""Where a lenet training step spends its time: forward and backward of each layer.

    python benchmarks/profile_layers.py [--batch 64] [--steps 60] [--blas-threads 1] [--fused]

Runs the layers one by one (``--fused``: the units a training step runs, each
Convolutional -> MaxPool -> ReLU of labkit.fused as one) on a single thread, as each
slice of a split step runs (``--batch 64`` is one slice of a batch of 128); medians over
the steps after ten warm-up steps. Adam and the loss are timed as their own rows. For a sampling
profile of the whole process, run ``py-spy record -f raw -- python benchmarks/...``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from bench_data import data_source  # beside this script
from threadpoolctl import threadpool_limits

from labkit import fused
from labkit.data import load_mnist, one_hot
from labkit.losses import softmax_cross_entropy_prime
from labkit.memory import keep_freed_memory
from labkit.models import lenet
from labkit.optim import Adam

WARMUP = 10


def unit_name(unit) -> str:
    """A layer's name, or a fused block's layers' names joined by '+'."""
    layers = getattr(unit, "layers", None)
    return "+".join(layer.name for layer in layers) if layers else unit.name


def profile(batch: int, steps: int, fused_steps: bool = False) -> dict[str, list[float]]:
    """Seconds per call of every layer's forward and backward, the loss and Adam; with
    ``fused_steps``, of the units a training step runs (labkit.fused blocks as one)."""
    data = load_mnist(data_source(None))
    batches = max(1, min(8, len(data.x_train) // batch))
    x = np.ascontiguousarray(data.x_train[: batches * batch])
    y = one_hot(data.y_train[: batches * batch])
    network = lenet(seed=0)
    optimizer = Adam(network)
    times: dict[str, list[float]] = {}

    def timed(name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        times.setdefault(name, []).append(time.perf_counter() - start)
        return result

    for step in range(WARMUP + steps):
        part = slice((step % batches) * batch, (step % batches + 1) * batch)
        h = x[part]
        units = fused.plan(network.layers) if fused_steps else network.layers
        for unit in units:
            h = timed(f"{unit_name(unit)} forward", unit.forward, h)
        grad = timed("loss derivative", softmax_cross_entropy_prime, y[part], h)
        for unit in reversed(units[1:]):
            grad = timed(f"{unit_name(unit)} backward", unit.backward, grad)
        first = units[0]
        timed(f"{unit_name(first)} backward", first.backward, grad, input_gradient=False)
        timed("Adam step", optimizer.step)
    return {name: values[WARMUP:] for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--blas-threads", type=int, default=1)
    parser.add_argument(
        "--fused", action="store_true", help="time the units a training step runs (labkit.fused)"
    )
    args = parser.parse_args()
    keep_freed_memory()  # as every labkit step runs (labkit/memory.py)
    with threadpool_limits(limits=args.blas_threads, user_api="blas"):
        times = profile(args.batch, args.steps, args.fused)
    medians = {name: statistics.median(values) for name, values in times.items()}
    total = sum(medians.values())
    path = "fused step path" if args.fused else "layer by layer"
    title = f"lenet, batch {args.batch}, BLAS threads {args.blas_threads}, {path}"
    print(f"| {title} | median ms | share |")
    print("|---|---:|---:|")
    for name, seconds in sorted(medians.items(), key=lambda item: -item[1]):
        print(f"| {name} | {seconds * 1e3:.2f} | {seconds / total:.0%} |")
    print(f"| **step** | **{total * 1e3:.2f}** | {args.batch / total:,.0f} img/s |")


if __name__ == "__main__":
    main()
