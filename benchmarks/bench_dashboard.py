"""Dashboard speed: server time of a step move, of the first page, and of a 200-run folder.

    python benchmarks/bench_dashboard.py [--records 2000] [--moves 30] [--runs 200]

Writes a synthetic lenet run with ``--records`` records (random weights and statistics,
shaped like lenet's) and a folder of ``--runs`` small runs into a temporary folder, then
drives the app's server in this process through Flask's test client, with the bodies the
browser posts (:mod:`dashboards.callback_requests`), so each time includes Dash's
dispatch and the JSON of the answer:

- a step move: every server callback the slider's value triggers, for random records
  (the step markers move in the browser, which costs the server nothing);
- the first page: the page, its layout and every callback a page load runs;
- the run list of the folder of many runs: the first page (the run list read cold) and
  the live poll of an open page (nothing changed).

Prints medians and the worst case.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from dashboards.app import create_app
from dashboards.callback_requests import body
from labkit.models import lenet
from labkit.recording import HIST, PROBE_IMAGES, PROBE_LABELS, PROBS, STATS, run_layout
from labkit.runs import RunWriter

URL = "/_dash-update-component"
STEP_CALLBACKS = ("step-label.children", "kernels.figure", "features.figure")


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


def page_values(name: str, records: int) -> dict:
    """What an open page holds, by ``"id.property"``, at the last record of run ``name``."""
    return {
        "url.search": f"?run={name}",
        "run.value": name,
        "record.value": records - 1,
        "layer.value": 3,
        "kernel-layer.value": 3,
        "kernel-mode.value": "change",
        "probe.value": 5,
        "feature-layer.value": 3,
        "axis.value": "auto",
        "live.n_intervals": 1,
        "gradchecks.page_current": 0,
        "gradchecks.page_size": 12,
    }


def timed(client, app, output: str, values: dict, changed=()) -> float:
    """Seconds the server takes to answer one callback request (which must succeed)."""
    request = body(app, output, values, tuple(changed))
    start = time.perf_counter()
    response = client.post(URL, json=request)
    elapsed = time.perf_counter() - start
    if response.status_code not in (200, 204):
        raise RuntimeError(f"{output}: HTTP {response.status_code}")
    return elapsed


def first_page(app, name: str, records: int) -> float:
    """Seconds for the page, its layout and every callback a page load runs."""
    client = app.server.test_client()
    values = page_values(name, records)
    start = time.perf_counter()
    client.get("/")
    client.get("/_dash-layout")
    for output in (
        "view.data",
        "record.max",
        "curves.figure",
        *STEP_CALLBACKS,
        "gradchecks.data",
        "check-status.children",
    ):
        timed(client, app, output, values, ["run.value"])
    return time.perf_counter() - start


def step_moves(app, name: str, records: int, moves: int) -> dict[str, list[float]]:
    """Server seconds of each step callback, for ``moves`` random slider positions."""
    client = app.server.test_client()
    values = page_values(name, records)
    times: dict[str, list[float]] = {output: [] for output in STEP_CALLBACKS}
    times["all"] = []
    for record in np.random.default_rng(1).integers(0, records, moves):
        values["record.value"] = int(record)
        total = 0.0
        for output in STEP_CALLBACKS:
            elapsed = timed(client, app, output, values, ["record.value"])
            times[output].append(elapsed)
            total += elapsed
        times["all"].append(total)
    return times


def many_runs(root: Path, count: int, source: Path) -> tuple[float, float]:
    """A folder of ``count`` copies of ``source``: (first page, live poll) in seconds."""
    for index in range(count):
        shutil.copytree(source, root / f"student-{index:03d}")
    app = create_app(root)
    cold = first_page(app, f"student-{count - 1:03d}", 20)  # the run list read cold
    client = app.server.test_client()
    polls = []
    for _ in range(5):
        start = time.perf_counter()
        timed(client, app, "runs-version.data", {"live.n_intervals": 1})
        polls.append(time.perf_counter() - start)
    return cold, statistics.median(polls)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000, help="records of the big run")
    parser.add_argument("--moves", type=int, default=30, help="slider positions timed")
    parser.add_argument("--runs", type=int, default=200, help="runs in the many-runs folder")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="labkit-dash-"))
    try:
        start = time.perf_counter()
        write_synthetic_run(root / "one" / "big", args.records)
        write_synthetic_run(root / "small", 20, seed=1)
        print(f"wrote a {args.records}-record run in {time.perf_counter() - start:.0f} s")
        app = create_app(root / "one")
        cold = first_page(app, "big", args.records)
        warm = first_page(app, "big", args.records)
        moves = step_moves(app, "big", args.records, args.moves)
        (root / "many").mkdir()
        many_cold, many_poll = many_runs(root / "many", args.runs, root / "small")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n| dashboard, {args.records} records | server time |")
    print("|---|---|")
    print(f"| first page, the run opened cold (page, layout, every callback) | {ms(cold)} |")
    print(f"| first page, the run already open | {ms(warm)} |")
    median = {output: statistics.median(times) for output, times in moves.items()}
    for output in STEP_CALLBACKS:
        print(f"| step move: `{output}`, median of {args.moves} | {ms(median[output])} |")
    print(f"| step move, every panel, median of {args.moves} | {ms(median['all'])} |")
    print(f"| step move, every panel, worst of {args.moves} | {ms(max(moves['all']))} |")
    print(f"| {args.runs} runs: first page (layout and the run list, cold) | {ms(many_cold)} |")
    print(f"| {args.runs} runs: the live poll of an open page, nothing new | {ms(many_poll)} |")


if __name__ == "__main__":
    main()
