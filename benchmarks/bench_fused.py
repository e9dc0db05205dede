"""A lenet training step layer by layer against the step path (labkit.fused), one thread.

    python benchmarks/bench_fused.py [--batch 16 64] [--repeats 40]

``Network.forward``/``backward`` (every layer on its own) against
``Network.step_forward``/``step_backward`` (each Convolutional -> MaxPool -> ReLU as one
block), the loss derivative between; the two alternate, 3 steps at a time, ``--repeats``
times, on one core with single-threaded BLAS (as each slice of a split step runs). Prints
each one's median ms and the step path's speed-up with its quartiles over the repeats.
Inference too: ``forward`` against ``step_forward`` alone.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from bench_data import DATA_HELP, data_source  # beside this script
from threadpoolctl import threadpool_limits

from labkit.data import load_mnist, one_hot
from labkit.losses import softmax_cross_entropy_prime
from labkit.memory import keep_freed_memory
from labkit.models import lenet


def contenders(batch: int, data) -> dict[str, dict[str, Callable[[], object]]]:
    x, y = data.x_train[:batch], one_hot(data.y_train[:batch])
    network = lenet(seed=0)

    def layers() -> None:
        out = network.forward(x)
        network.backward(softmax_cross_entropy_prime(y, out), input_gradient=False)

    def step_path() -> None:
        out = network.step_forward(x)
        network.step_backward(softmax_cross_entropy_prime(y, out), input_gradient=False)

    return {
        "training step": {"layer by layer": layers, "step path": step_path},
        "inference": {
            "layer by layer": lambda: network.forward(x),
            "step path": lambda: network.step_forward(x),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--data", help=DATA_HELP)
    args = parser.parse_args()
    data = load_mnist(data_source(args.data))
    keep_freed_memory()  # as every labkit step runs
    print("| batch | what | layer by layer ms | step path ms | speed-up (quartiles) |")
    print("|---:|---|---:|---:|---:|")
    with threadpool_limits(limits=1, user_api="blas"):
        for batch in args.batch:
            for what, pair in contenders(batch, data).items():
                times: dict[str, list[float]] = {name: [] for name in pair}
                for fn in pair.values():
                    fn()  # warm-up
                for _ in range(args.repeats):
                    for name, fn in pair.items():
                        start = time.perf_counter()
                        for _ in range(3):
                            fn()
                        times[name].append((time.perf_counter() - start) / 3 * 1e3)
                ratios = sorted(
                    a / b for a, b in zip(times["layer by layer"], times["step path"], strict=True)
                )
                q1, q3 = ratios[len(ratios) // 4], ratios[3 * len(ratios) // 4]
                print(
                    f"| {batch} | {what} | {statistics.median(times['layer by layer']):.2f} | "
                    f"{statistics.median(times['step path']):.2f} | "
                    f"{statistics.median(ratios):.3f} ({q1:.3f}–{q3:.3f}) |"
                )


if __name__ == "__main__":
    main()
