"""What hooks cost: a lenet training step never hooked, hooked then unhooked, and hooked.

    python benchmarks/bench_hooks.py [--steps 100] [--repeats 5] [--batch 32]

With no hook registered a layer runs its own method (the wrapper lives on the instance
only while a hook does), so "hooks removed" should equal "never hooked" within noise.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from labkit.losses import softmax_cross_entropy_prime
from labkit.models import lenet
from labkit.optim import Adam


def make_step(network, batch: int):
    """One training step on a fixed random batch, as the Trainer does it."""
    rng = np.random.default_rng(0)
    x = rng.random((batch, 1, 28, 28), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch)]
    optimizer = Adam(network)

    def step() -> None:
        output = network.forward(x)
        network.backward(softmax_cross_entropy_prime(y, output), input_gradient=False)
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    never = lenet(seed=0)
    removed = lenet(seed=0)
    removed.register_hook(forward=lambda *a: None, backward=lambda *a: None).remove()
    hooked = lenet(seed=0)
    hooked.register_hook(forward=lambda *a: None, backward=lambda *a: None)
    steps = {
        "never hooked": make_step(never, args.batch),
        "hooks removed": make_step(removed, args.batch),
        "no-op hook on every layer": make_step(hooked, args.batch),
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():
        for _ in range(10):
            step()
    for _ in range(args.repeats):  # interleaved, so machine noise hits all three alike
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[name].append((time.perf_counter() - start) / args.steps)
    base = statistics.median(times["never hooked"])
    print(f"| lenet training step, batch {args.batch} | median ms | ratio |")
    print("|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median * 1e3:.3f} | {median / base:.3f} |")


if __name__ == "__main__":
    main()
