"""What hooks cost: a lenet training step never hooked, hooked then unhooked, and hooked.

    python benchmarks/bench_hooks.py [--steps 100] [--repeats 5] [--batch 32] [--threads N]

With no hook registered a layer runs its own method (the wrapper lives on the instance
only while a hook does), so "hooks removed" should equal "never hooked" within noise.
On several cores a hooked step also keeps every layer's slices and joins them for
the hooks (a hook sees the whole batch, not a thread's slice); ``--threads 1``
isolates the wrappers' own cost.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from labkit.models import lenet
from labkit.optim import Adam
from labkit.train import Trainer


def make_step(network, batch: int, threads: int | None):
    """One ``Trainer.train_step`` (what ``labkit train`` runs) on a fixed random batch."""
    rng = np.random.default_rng(0)
    x = rng.random((batch, 1, 28, 28), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch)]
    trainer = Trainer(network, Adam(network), batch_size=batch, progress=False, threads=threads)
    return lambda: trainer.train_step(x, y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="default: every core")
    args = parser.parse_args()

    never = lenet(seed=0)
    removed = lenet(seed=0)
    removed.register_hook(forward=lambda *a: None, backward=lambda *a: None).remove()
    hooked = lenet(seed=0)
    hooked.register_hook(forward=lambda *a: None, backward=lambda *a: None)
    steps = {
        "never hooked": make_step(never, args.batch, args.threads),
        "hooks removed": make_step(removed, args.batch, args.threads),
        "no-op hook on every layer": make_step(hooked, args.batch, args.threads),
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
    threads = "every core" if args.threads is None else args.threads
    print(f"| lenet training step, batch {args.batch}, threads {threads} | median ms | ratio |")
    print("|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median * 1e3:.3f} | {median / base:.3f} |")


if __name__ == "__main__":
    main()
