"""A network with a user's layer against the same network with labkit's, and --threads 1.

    python benchmarks/bench_user_layer.py [--batch 32] [--steps 100] [--repeats 7]
                                          [--fit-images 12800] [--neighbour] [--json out.json]

Everything runs in one process, interleaved (a b c d ... a b c d ...), so a busy
neighbour hits every configuration alike; each ratio is taken within one repeat and the
table gives its median and range over the repeats. The networks (Adam, float32):

- (a) ``examples/leaky_net.py`` as written: Conv 3x3x8 -> its ``LeakyReLU(Layer)`` ->
  MaxPool -> Flatten -> Dense, the user layer not opted in, so every step runs serially;
- (b) the same, the LeakyReLU opted in (a subclass that only says ``replicable = True``);
- (c) the same with labkit's ``ReLU`` in its place, split over the threads;
- (d) lenet with ``threads=1`` and with the default (every core).

The step rows time ``Trainer.train_step``; the ``fit`` rows time one epoch of
``Trainer.fit`` over ``--fit-images`` images with the recorder on (as ``labkit train``
runs it: its writer thread is the Python thread a serial step must not fight). The
``serial step`` rows time the serial step by hand with BLAS at 2 threads and at 1: the
measurement behind ``labkit.parallel.step_blas``. ``--neighbour`` runs a second process
spinning on one core throughout, as a shared machine often has.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

from bench_data import DATA_HELP, data_source  # noqa: E402 - beside this script
from leaky_net import LeakyReLU, build  # noqa: E402  (the user's file, as written)

from labkit.data import MNIST, load_mnist, one_hot  # noqa: E402
from labkit.layers import ReLU  # noqa: E402
from labkit.losses import softmax_cross_entropy, softmax_cross_entropy_prime  # noqa: E402
from labkit.models import lenet  # noqa: E402
from labkit.network import Network  # noqa: E402
from labkit.optim import Adam  # noqa: E402
from labkit.parallel import thread_count  # noqa: E402
from labkit.recorder import Recorder, RecordSchedule, choose_probes  # noqa: E402
from labkit.train import Trainer  # noqa: E402

BATCH = 32  # labkit train's default


class OptedInLeakyReLU(LeakyReLU):
    """The user's LeakyReLU, opted in: its forward rebinds ``self.input`` and writes to no
    shared array, so a replica per thread is safe."""

    replicable = True


def leaky_network(layer: str) -> Network:
    """The examples/leaky_net.py network with its activation as ``layer`` says."""
    network = build(seed=0)
    if layer == "opted-in":
        network.layers[1] = OptedInLeakyReLU(network.layers[1].slope)
    elif layer == "relu":
        network.layers[1] = ReLU()
    return Network(network.layers)


NETWORKS: dict[str, tuple[Callable[[], Network], int | None]] = {
    "(a) user LeakyReLU, as written": (lambda: leaky_network("as-written"), None),
    "(b) user LeakyReLU, opted in": (lambda: leaky_network("opted-in"), None),
    "(c) labkit ReLU": (lambda: leaky_network("relu"), None),
    "lenet, threads=1": (lenet, 1),
    "lenet, default threads": (lenet, None),
}
RATIOS = [
    ("(a) / (c)", "(a) user LeakyReLU, as written", "(c) labkit ReLU"),
    ("(b) / (c)", "(b) user LeakyReLU, opted in", "(c) labkit ReLU"),
    ("(d) lenet threads=1 / default", "lenet, threads=1", "lenet, default threads"),
]


def step_timer(make: Callable[[], Network], threads: int | None, x, y, batch: int) -> Callable:
    """A function running ``steps`` train_steps of a fresh trainer; returns seconds."""
    network = make()
    trainer = Trainer(network, Adam(network), batch_size=batch, progress=False, threads=threads)
    batches = len(x) // batch

    def run(steps: int) -> float:
        start = time.perf_counter()
        for step in range(steps):
            part = slice((step % batches) * batch, (step % batches + 1) * batch)
            trainer.train_step(x[part], y[part])
        return time.perf_counter() - start

    return run


def serial_timer(make: Callable[[], Network], blas: int, x, y, batch: int) -> Callable:
    """The serial step by hand (forward, loss, backward, Adam) with BLAS at ``blas`` threads:
    what train_step did on the serial path before step_blas."""
    network = make()
    optimizer = Adam(network)
    batches = len(x) // batch

    def run(steps: int) -> float:
        with threadpool_limits(limits=blas, user_api="blas"):
            start = time.perf_counter()
            for step in range(steps):
                part = slice((step % batches) * batch, (step % batches + 1) * batch)
                output = network.forward(x[part])
                grad = softmax_cross_entropy_prime(y[part], output)
                network.backward(grad, input_gradient=False)
                softmax_cross_entropy(y[part], output)
                optimizer.step()
            return time.perf_counter() - start

    return run


def fit_timer(
    make: Callable[[], Network], threads: int | None, data: MNIST, batch: int
) -> Callable:
    """One recorded epoch of Trainer.fit over ``data``, as labkit train runs it; seconds."""

    def run(_: int) -> float:
        network = make()
        probes = choose_probes(data.y_test, seed=0)
        with tempfile.TemporaryDirectory() as folder:
            recorder = Recorder(
                Path(folder) / "run",
                data.x_test[probes],
                data.y_test[probes],
                schedule=RecordSchedule(),
                manifest={"config": {"benchmark": "bench_user_layer"}},
            )
            trainer = Trainer(
                network,
                Adam(network),
                batch_size=batch,
                callbacks=[recorder],
                progress=False,
                threads=threads,
            )
            return trainer.fit(data, 1).epochs[0].seconds

    return run


def measure(timers: dict[str, Callable], steps: int, repeats: int, warmup: int) -> dict:
    """Seconds per block of every timer, interleaved: one block of each per repeat."""
    for run in timers.values():
        run(warmup)
    seconds: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(repeats):
        for name, run in timers.items():
            seconds[name].append(run(steps))
    return seconds


def ratio_rows(seconds: dict, images: int, pairs) -> list[dict]:
    """Per pair: images/s of each side (median) and the ratio's median and range."""
    rows = []
    for label, top, bottom in pairs:
        ratios = [b / a for a, b in zip(seconds[top], seconds[bottom], strict=True)]
        rows.append(
            {
                "ratio": label,
                "numerator img/s": images / statistics.median(seconds[top]),
                "denominator img/s": images / statistics.median(seconds[bottom]),
                "median": statistics.median(ratios),
                "min": min(ratios),
                "max": max(ratios),
            }
        )
    return rows


def print_table(title: str, rows: list[dict], repeats: int) -> None:
    print(f"\n| {title} | img/s | vs img/s | ratio (median) | range over {repeats} repeats |")
    print("|---|---:|---:|---:|---|")
    for row in rows:
        print(
            f"| {row['ratio']} | {row['numerator img/s']:,.0f} | "
            f"{row['denominator img/s']:,.0f} | **{row['median']:.2f}** | "
            f"{row['min']:.2f}–{row['max']:.2f} |"
        )


def start_neighbour() -> subprocess.Popen:
    """A process spinning on one core until we end it (a busy neighbour on a shared VM)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help=DATA_HELP)
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--steps", type=int, default=100, help="train steps per timed block")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--fit-images", type=int, default=12800, help="0: no fit rows")
    parser.add_argument("--fit-repeats", type=int, default=3)
    parser.add_argument("--neighbour", action="store_true", help="a busy process on one core")
    parser.add_argument("--json", type=Path, default=None, help="write every raw timing here")
    args = parser.parse_args()
    batch = args.batch

    source = data_source(args.data)
    data = load_mnist(source)
    x = np.ascontiguousarray(data.x_train[: 20 * batch])
    y = one_hot(data.y_train[: 20 * batch])
    blas = ", ".join(f"{i['internal_api']} {i['num_threads']}" for i in threadpool_info())
    print(f"data {data.source}; {thread_count(None)} cores; BLAS threads by default: {blas}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    neighbour = start_neighbour() if args.neighbour else None
    try:
        timers = {
            name: step_timer(make, threads, x, y, batch)
            for name, (make, threads) in NETWORKS.items()
        }
        for blas_threads in (2, 1):
            timers[f"leaky serial, BLAS {blas_threads}"] = serial_timer(
                lambda: leaky_network("as-written"), blas_threads, x, y, batch
            )
            timers[f"lenet serial, BLAS {blas_threads}"] = serial_timer(
                lenet, blas_threads, x, y, batch
            )
        steps = measure(timers, args.steps, args.repeats, args.warmup)
        fits = {}
        if args.fit_images:
            n = min(args.fit_images, len(data.x_train))
            subset = MNIST(
                data.x_train[:n], data.y_train[:n], data.x_test[:500], data.y_test[:500], ""
            )
            fit_timers = {
                name: fit_timer(make, threads, subset, batch)
                for name, (make, threads) in NETWORKS.items()
            }
            fits = measure(fit_timers, 0, args.fit_repeats, warmup=0)
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if neighbour is not None:
        print("with a neighbour process spinning on one core throughout")

    print_table(
        f"train_step, batch {batch}, {args.steps} steps a block",
        ratio_rows(steps, args.steps * batch, RATIOS),
        args.repeats,
    )
    serial_pairs = [
        ("leaky serial step, BLAS 2 / BLAS 1", "leaky serial, BLAS 2", "leaky serial, BLAS 1"),
        ("lenet serial step, BLAS 2 / BLAS 1", "lenet serial, BLAS 2", "lenet serial, BLAS 1"),
    ]
    print_table(
        "serial step by hand", ratio_rows(steps, args.steps * batch, serial_pairs), args.repeats
    )
    if fits:
        print_table(
            f"fit, batch {batch}, 1 epoch of {n:,} images, recorded",
            ratio_rows(fits, n, RATIOS),
            args.fit_repeats,
        )
    if args.json:
        record = {"args": {k: str(v) for k, v in vars(args).items()}, "steps": steps, "fit": fits}
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
