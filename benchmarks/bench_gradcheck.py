"""Time the gradient checker on the lenet preset, as `labkit gradcheck` runs it.

    python benchmarks/bench_gradcheck.py [--repeats 3]

Prints, as a Markdown table, the median wall time of: a full (every element) check of
every layer of lenet at batch 2, a fast (directional) check of the whole network, and a
full check of the tutorial's own dense layer of its MNIST network, ``Dense(3380, 100)``
as a student writes it (338,000 weights, one sample).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from labkit.checks import digits, jitter_biases, layer_inputs
from labkit.gradcheck import check_layer, check_network
from labkit.models import lenet


def time_it(job, repeats: int) -> tuple[float, float, object]:
    """Median wall and CPU seconds of ``job()`` over ``repeats`` runs, and its last result.

    The checker runs on one BLAS thread, so CPU time is what the check costs on a quiet
    machine even when this one is busy.
    """
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = job()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


class TutorialDense:
    """The tutorial's dense layer as a student types it: one column sample, SGD inside."""

    def __init__(self, input_size: int, output_size: int, rng: np.random.Generator) -> None:
        self.weights = rng.standard_normal((output_size, input_size)) / np.sqrt(input_size)
        self.bias = rng.standard_normal((output_size, 1))

    def forward(self, input: np.ndarray) -> np.ndarray:
        self.input = input
        return np.dot(self.weights, self.input) + self.bias

    def backward(self, output_gradient: np.ndarray, learning_rate: float) -> np.ndarray:
        input_gradient = np.dot(self.weights.T, output_gradient)
        self.weights -= learning_rate * np.dot(output_gradient, self.input.T)
        self.bias -= learning_rate * output_gradient
        return input_gradient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    network = jitter_biases(lenet(seed=0), seed=0)
    x, y = digits(args.batch)
    inputs = layer_inputs(network, x)

    def full_layers():
        return [check_layer(layer, xi) for layer, xi in zip(network.layers, inputs, strict=True)]

    def fast_network():
        return check_network(network, x, y, mode="fast")

    full_wall, full_cpu, reports = time_it(full_layers, args.repeats)
    checks = [check for report in reports for check in report.checks]
    elements = sum(check.checked for check in checks if check.against == "numeric")
    fast_wall, fast_cpu, report = time_it(fast_network, args.repeats)
    assert all(r.passed for r in reports) and report.passed
    print(f"| check (lenet, batch {args.batch}, float64) | elements | wall | CPU |")
    print("|---|---|---|---|")
    print(f"| full, every layer | {elements:,} | {full_wall:.2f} s | {full_cpu:.2f} s |")
    tensors = f"{len(report.checks)} tensors"
    print(f"| fast, whole network | {tensors} | {fast_wall:.2f} s | {fast_cpu:.2f} s |")
    rng = np.random.default_rng(0)
    dense, column = TutorialDense(3380, 100, rng), rng.standard_normal((3380, 1))
    dense_wall, dense_cpu, dense_report = time_it(lambda: check_layer(dense, column), args.repeats)
    assert dense_report.passed
    checked = sum(check.checked for check in dense_report.checks)
    row = f"| full, the tutorial's Dense(3380, 100) | {checked:,} | {dense_wall:.2f} s |"
    print(f"{row} {dense_cpu:.2f} s |")
    print(f"(median of {args.repeats} runs)")


if __name__ == "__main__":
    main()
