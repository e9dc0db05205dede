"""Time the gradient checker on the lenet preset, as `labkit gradcheck` runs it.

    python benchmarks/bench_gradcheck.py [--repeats 3]

Prints, as a Markdown table, the median wall time of: a full (every element) check of
every layer of lenet at batch 2, and a fast (directional) check of the whole network.
"""

from __future__ import annotations

import argparse
import statistics
import time

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
    elements = sum(check.checked for report in reports for check in report.checks)
    fast_wall, fast_cpu, report = time_it(fast_network, args.repeats)
    assert all(r.passed for r in reports) and report.passed
    print(f"| check (lenet, batch {args.batch}, float64) | elements | wall | CPU |")
    print("|---|---|---|---|")
    print(f"| full, every layer | {elements:,} | {full_wall:.2f} s | {full_cpu:.2f} s |")
    tensors = f"{len(report.checks)} tensors"
    print(f"| fast, whole network | {tensors} | {fast_wall:.2f} s | {fast_cpu:.2f} s |")
    print(f"(median of {args.repeats} runs)")


if __name__ == "__main__":
    main()
