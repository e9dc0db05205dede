"""A lenet training step on 1 core, and split over N cores on threads and on processes.

    python benchmarks/bench_split.py [--batch 32 128] [--cores 2] [--steps 50] [--repeats 5]

``Trainer.train_step`` (forward, loss, backward, Adam) of three trainers of the same
network in one process, their blocks of ``--steps`` steps alternated ``--repeats`` times
after a warm-up: ``threads=1`` (serial), ``threads=N, split="threads"`` and
``threads=N, split="processes"``. Prints each one's median img/s with the range over
the repeats, and its ratio to the serial step in the same repeat.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench_data import DATA_HELP, data_source  # beside this script

from labkit.data import load_mnist, one_hot
from labkit.models import lenet
from labkit.optim import Adam
from labkit.parallel import step_blas
from labkit.train import Trainer

WARMUP = 10
POOL = 8  # distinct batches cycled through


def trainers(batch: int, cores: int) -> dict[str, Trainer]:
    made = {}
    for label, threads, split in (
        ("serial (threads=1)", 1, "threads"),
        (f"{cores} threads", cores, "threads"),
        (f"{cores} processes", cores, "processes"),
    ):
        network = lenet(seed=0)
        made[label] = Trainer(
            network, Adam(network), batch_size=batch, progress=False, threads=threads, split=split
        )
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", help=DATA_HELP)
    args = parser.parse_args()
    data = load_mnist(data_source(args.data))
    print("| batch | trainer | img/s (median, range) | over serial (median, range) |")
    print("|---:|---|---:|---:|")
    for batch in args.batch:
        x, y = data.x_train[: batch * POOL], one_hot(data.y_train[: batch * POOL])
        batches = [(x[i : i + batch], y[i : i + batch]) for i in range(0, len(x), batch)]
        made = trainers(batch, args.cores)
        rates: dict[str, list[float]] = {label: [] for label in made}
        with step_blas():
            for trainer in made.values():
                for step in range(WARMUP):
                    trainer.train_step(*batches[step % POOL])
            for _ in range(args.repeats):
                for label, trainer in made.items():
                    start = time.perf_counter()
                    for step in range(args.steps):
                        trainer.train_step(*batches[step % POOL])
                    rates[label].append(args.steps * batch / (time.perf_counter() - start))
        serial = rates["serial (threads=1)"]
        for label, values in rates.items():
            ratios = [value / base for value, base in zip(values, serial, strict=True)]
            print(
                f"| {batch} | {label} | {statistics.median(values):,.0f} "
                f"({min(values):,.0f}–{max(values):,.0f}) | {statistics.median(ratios):.2f} "
                f"({min(ratios):.2f}–{max(ratios):.2f}) |"
            )
        for trainer in made.values():
            trainer.parallel.close()


if __name__ == "__main__":
    main()
