"""Dashboard speed: server time of the slider's callbacks and of the first page load.

    python benchmarks/bench_dashboard.py [--records 2000] [--moves 30]

Writes a synthetic lenet run with ``--records`` records (random weights and statistics,
feature maps of one real-looking size) into a temporary folder, then times, in this
process, what the server does: building the page and the run's controls (first load)
and, for random slider positions, every panel's callback (step panels, kernels, feature
maps). Prints medians and the worst case.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from dashboards import callbacks
from dashboards.app import create_app
from labkit.models import lenet
from labkit.recording import HIST, PROBE_IMAGES, PROBE_LABELS, PROBS, STATS, run_layout
from labkit.runs import RunWriter


def write_synthetic_run(path: Path, records: int, seed: int = 0) -> None:
    """A run in the recorder's layout whose arrays are random but shaped like lenet's."""
    rng = np.random.default_rng(seed)
    network = lenet(seed=seed)
    arrays, described = run_layout(network, (16, 1, 28, 28))
    manifest = {"architecture": network.architecture(), **described}
    statics = {
        PROBE_IMAGES: rng.random((16, 1, 28, 28), dtype=np.float32),
        PROBE_LABELS: np.arange(16) % 10,
    }
    writer = RunWriter.create(
        path, capacity=records, record_arrays=arrays, static_arrays=statics, manifest=manifest
    )
    template = {
        name: rng.standard_normal(shape).astype(dtype) for name, (shape, dtype) in arrays.items()
    }
    template[HIST] = rng.integers(0, 500, template[HIST].shape).astype(np.int32)
    template[STATS] = np.abs(template[STATS])
    probs = rng.random((16, 10)).astype(np.float32)
    template[PROBS] = probs / probs.sum(axis=1, keepdims=True)
    rows = []
    for record in range(records):
        step = (record + 1) * 10
        rows.append(
            {
                "step": step,
                "epoch": 1 + record // 200,
                "loss": 1 / (1 + record),
                "accuracy": 0.9,
                "lr": 1e-3,
            }
        )
        writer.write_record(step, 1 + record // 200, template)
    writer.append_metrics(rows)
    writer.close("completed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--moves", type=int, default=30)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="labkit-dash-"))
    try:
        start = time.perf_counter()
        write_synthetic_run(root / "big", args.records)
        print(f"wrote a {args.records}-record run in {time.perf_counter() - start:.0f} s")

        start = time.perf_counter()
        app = create_app(root)
        app.layout()
        store = app.labkit_store
        controls = callbacks.run_controls(store, "big", None)
        cached = store.get("big")
        first = controls["record"]
        callbacks.step_panels(cached, first, 0, None)
        callbacks.kernel_panel(cached, first, 0, "weights")
        callbacks.feature_panel(cached, first, 0, 0)
        first_load = time.perf_counter() - start

        rng = np.random.default_rng(1)
        times = []
        for record in rng.integers(0, args.records, args.moves):
            start = time.perf_counter()
            callbacks.step_panels(cached, int(record), 3, None)
            callbacks.kernel_panel(cached, int(record), 3, "change")
            callbacks.feature_panel(cached, int(record), 5, 3)
            times.append(time.perf_counter() - start)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"| dashboard, {args.records} records | server time |")
    print("|---|---|")
    print(f"| first page load (layout, run controls, every panel) | {first_load * 1e3:.0f} ms |")
    print(
        f"| slider move, every panel, median of {args.moves} | "
        f"{statistics.median(times) * 1e3:.0f} ms |"
    )
    print(f"| slider move, worst of {args.moves} | {max(times) * 1e3:.0f} ms |")


if __name__ == "__main__":
    main()
