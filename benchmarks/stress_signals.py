"""Stress trial, not a speed benchmark: stop `labkit train` with real signals at random
moments and count the runs that kept what they trained.

    python benchmarks/stress_signals.py [--trials 30] [--seed 0]

Each trial trains lenet on the bundled sample (2 epochs, ~4 s) and sends SIGINT, SIGTERM
or SIGKILL after a random delay spread over the whole life of the process: while it
imports, while it trains, around the last epoch line while the run closes and the
weights are saved, and after it is done. A trial is intact when nothing trained was
lost: every committed record reads, and a run that stopped other than by SIGKILL has
whole weights, a history and the status they say (completed or interrupted); it exits
cleanly with 0 (it finished first), 130/143 (-9 for SIGKILL) and no traceback. Prints a
Markdown table, then the trials that were not both.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from labkit.network import Network
from labkit.runs import open_run

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
EXPECTED = {signal.SIGINT: (0, 130), signal.SIGTERM: (0, 143), signal.SIGKILL: (0, -9)}  # clean


def one_trial(folder: Path, signum: int, delay: float) -> tuple[bool, bool, str]:
    """Train into ``folder``, send ``signum`` after ``delay`` s; (intact: nothing trained
    was lost, clean: the exit status the signal calls for and no traceback, what was seen)."""
    command = [sys.executable, "-m", "labkit.cli", "train", "--epochs", "2", "--no-progress"]
    process = subprocess.Popen(
        [*command, "--record-every", "10", "--out", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(delay)
    if process.poll() is None:
        process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    code = process.returncode
    clean = code in EXPECTED[signum] and "Traceback" not in err
    seen = f"exit {code}" + ("" if clean else f" ({err.strip().splitlines()[-1:]})")
    if not (folder / "manifest.json").exists():
        return not (folder / "weights.npz").exists(), clean, f"{seen}, before the run began"
    run = open_run(folder)
    for record in range(len(run)):
        for name in run.arrays():
            run.array(name, record)  # every committed record reads whole
    weights, history = folder / "weights.npz", folder / "history.json"
    if run.status == "crashed":  # killed while training: the committed records are what's kept
        return signum == signal.SIGKILL, clean, f"{seen}, crashed, {len(run)} records read"
    if not (weights.exists() and history.exists()):
        return False, clean, f"{seen}, {run.status}: weights or history missing"
    Network.load(weights)
    interrupted = json.loads(history.read_text())["interrupted"]
    if run.status != ("interrupted" if interrupted else "completed"):
        return False, clean, f"{seen}, status {run.status}, history interrupted={interrupted}"
    return True, clean, f"{seen}, {run.status}, {len(run)} records"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--longest", type=float, default=9.0, help="latest signal, seconds")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    outcomes: Counter = Counter()
    failures = []
    with tempfile.TemporaryDirectory() as root:
        for trial in range(args.trials):
            signum = SIGNALS[trial % len(SIGNALS)]
            delay = rng.uniform(0.2, args.longest)
            name = signal.Signals(signum).name
            intact, clean, seen = one_trial(Path(root) / f"t{trial}", signum, delay)
            outcomes[name, "trials"] += 1
            outcomes[name, "intact"] += intact
            outcomes[name, "clean"] += clean
            line = f"trial {trial}: {name} at {delay:.2f} s: {seen}"
            print(line, file=sys.stderr)
            if not (intact and clean):
                failures.append(line)
    print("| signal | trials | runs intact | clean exits |")
    print("|---|---|---|---|")
    for signum in SIGNALS:
        name = signal.Signals(signum).name
        counts = [outcomes[name, key] for key in ("trials", "intact", "clean")]
        print("| " + " | ".join([name, *map(str, counts)]) + " |")
    for failure in failures:
        print(f"- {failure}")


if __name__ == "__main__":
    main()
