"""Where a lenet training step spends its time: forward and backward of each layer.

    python benchmarks/profile_layers.py [--batch 64] [--steps 60] [--blas-threads 1]

Runs the layers one by one on a single thread (as each thread of a split step does:
``--batch 64`` is one thread's half of a batch of 128), medians over the steps after
ten warm-up steps. Adam and the loss are timed as their own rows. For a sampling
profile of the whole process, run ``py-spy record -f raw -- python benchmarks/...``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from labkit.data import load_mnist, one_hot
from labkit.losses import softmax_cross_entropy_prime
from labkit.memory import keep_freed_memory
from labkit.models import lenet
from labkit.optim import Adam

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist.npz"
WARMUP = 10


def profile(batch: int, steps: int) -> dict[str, list[float]]:
    """Seconds per call of every layer's forward and backward, the loss and Adam."""
    data = load_mnist(str(DEFAULT_DATA) if DEFAULT_DATA.is_file() else "sample")
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
        for layer in network:
            h = timed(f"{layer.name} forward", layer.forward, h)
        grad = timed("loss derivative", softmax_cross_entropy_prime, y[part], h)
        for layer in reversed(network.layers[1:]):
            grad = timed(f"{layer.name} backward", layer.backward, grad)
        first = network.layers[0]
        timed(f"{first.name} backward", first.backward, grad, input_gradient=False)
        timed("Adam step", optimizer.step)
    return {name: values[WARMUP:] for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--blas-threads", type=int, default=1)
    args = parser.parse_args()
    keep_freed_memory()  # as every labkit step runs (labkit/memory.py)
    with threadpool_limits(limits=args.blas_threads, user_api="blas"):
        times = profile(args.batch, args.steps)
    medians = {name: statistics.median(values) for name, values in times.items()}
    total = sum(medians.values())
    print(f"| lenet, batch {args.batch}, BLAS threads {args.blas_threads} | median ms | share |")
    print("|---|---:|---:|")
    for name, seconds in sorted(medians.items(), key=lambda item: -item[1]):
        print(f"| {name} | {seconds * 1e3:.2f} | {seconds / total:.0%} |")
    print(f"| **step** | **{total * 1e3:.2f}** | {args.batch / total:,.0f} img/s |")


if __name__ == "__main__":
    main()
