"""What recording costs: lenet training with and without the default Recorder.

    python benchmarks/bench_recording.py --data auto|PATH/mnist.npz [--epochs 1] [--repeats 2]

Trains the same network from the same seed with and without recording (default settings:
every 100 steps, denser at the start), alternating in one process, and prints the median
wall times, their ratio and range, and the run's size on disk per record, by group of
arrays (``features``, ``backward``: the probes' gradients, ``params``, ...).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from labkit.data import load_mnist
from labkit.models import lenet
from labkit.optim import Adam
from labkit.recorder import Recorder, choose_probes
from labkit.runs import open_run
from labkit.train import Trainer


def train_once(data, epochs: int, run_path: Path | None) -> float:
    """Seconds to train lenet for ``epochs``; records into ``run_path`` when given."""
    network = lenet(seed=0)
    callbacks = []
    if run_path is not None:
        probes = choose_probes(data.y_test)
        callbacks.append(Recorder(run_path, data.x_test[probes], data.y_test[probes]))
    trainer = Trainer(
        network, Adam(network), batch_size=32, seed=0, callbacks=callbacks, progress=False
    )
    start = time.perf_counter()
    trainer.fit(data, epochs)
    return time.perf_counter() - start


def group_sizes(path: Path) -> dict[str, int]:
    """Bytes on disk (whole blocks) of each top-level group of the run's arrays."""
    store = next(p for p in path.iterdir() if p.suffix == ".zarr")
    return {
        group.name: sum(f.stat().st_blocks * 512 for f in group.rglob("*") if f.is_file())
        for group in sorted(store.iterdir())
        if group.is_dir()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("LABKIT_DATA", "auto"))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    data = load_mnist(args.data)
    scratch = Path(tempfile.mkdtemp(prefix="labkit-bench-"))
    plain, recorded, size, records, groups = [], [], 0, 0, {}
    try:
        for repeat in range(args.repeats):
            plain.append(train_once(data, args.epochs, None))
            path = scratch / f"run{repeat}"
            recorded.append(train_once(data, args.epochs, path))
            run = open_run(path)
            size, records = run.size_bytes(), len(run.steps)
            groups = group_sizes(path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    base, with_recording = statistics.median(plain), statistics.median(recorded)
    steps = args.epochs * -(-len(data.x_train) // 32)
    print(f"data: {data.source}; lenet, batch 32, {args.epochs} epoch(s) = {steps} steps")
    print("| training | median wall time | ratio |")
    print("|---|---|---|")
    print(f"| without recording | {base:.1f} s | 1.00 |")
    ratios = sorted(r / p for r, p in zip(recorded, plain, strict=True))
    print(
        f"| with the default recorder | {with_recording:.1f} s | {with_recording / base:.3f} "
        f"(pairs {ratios[0]:.3f}–{ratios[-1]:.3f}) |"
    )
    print(
        f"run: {records} records, {size / 1e6:.1f} MB on disk "
        f"({size / max(records, 1) / 1e6:.2f} MB per record)"
    )
    print(
        "per record: "
        + ", ".join(
            f"{name} {bytes_ / max(records, 1) / 1e3:.0f} KB" for name, bytes_ in groups.items()
        )
    )


if __name__ == "__main__":
    main()
