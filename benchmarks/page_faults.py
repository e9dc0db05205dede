"""Page faults and time of a one-thread lenet step, with labkit's malloc settings and without.

    python benchmarks/page_faults.py [--batch 16 64 128] [--steps 100] [--repeats 3]

Each configuration runs in its own fresh process (the settings are process-wide and
cannot be undone), the two alternating, ``--repeats`` times each; minor page faults per
step come from ``getrusage``. Without the settings glibc hands every large array of a
step fresh pages (see ``labkit/memory.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from labkit.memory import OPT_OUT
from labkit.parallel import DataParallel

WARMUP = 20


def measure(batch: int, steps: int) -> dict[str, float]:
    """One process's figures: the settings are applied by DataParallel (unless opted out)."""
    from labkit.losses import softmax_cross_entropy_prime
    from labkit.models import lenet
    from labkit.optim import Adam

    rng = np.random.default_rng(0)
    x = rng.random((batch, 1, 28, 28), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch)]
    network = lenet()
    runner, optimizer = DataParallel(network, threads=1), Adam(network)

    def step() -> None:
        runner.forward_backward(x, lambda out: softmax_cross_entropy_prime(y, out))
        optimizer.step()

    for _ in range(WARMUP):
        step()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps
    return {"faults": faults, "ms": seconds * 1e3}


def in_fresh_process(batch: int, steps: int, keep: bool) -> dict[str, float]:
    env = dict(os.environ, **{OPT_OUT: "1" if keep else "0"})
    code = f"import page_faults, json; print(json.dumps(page_faults.measure({batch}, {steps})))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(env, PYTHONPATH=os.pathsep.join([os.path.dirname(__file__), *sys.path])),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[16, 64, 128])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    print("| batch | malloc settings | faults/step | ms/step (range over repeats) |")
    print("|---:|---|---:|---:|")
    for batch in args.batch:
        runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
        for _ in range(args.repeats):
            for keep in (False, True):
                runs[keep].append(in_fresh_process(batch, args.steps, keep))
        for keep in (False, True):
            faults = [r["faults"] for r in runs[keep]]
            ms = sorted(r["ms"] for r in runs[keep])
            label = "labkit's (kept)" if keep else "glibc defaults"
            faults_range = f"{min(faults):.0f}–{max(faults):.0f}"
            print(f"| {batch} | {label} | {faults_range} | {ms[0]:.2f}–{ms[-1]:.2f} |")


if __name__ == "__main__":
    main()
