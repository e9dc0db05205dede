"""What recording costs: lenet training with and without the default Recorder, interleaved.

    python benchmarks/bench_recording.py --data auto|PATH/mnist.npz [--epochs 5] [--repeats 2]

Two trainers of the same network from the same seed, one recorded (default settings:
every 100 steps, denser at the start), take turns in one process: each runs one record
period (100 steps) while the other waits, so a slow minute of a shared machine slows
both alike (whole runs alternated one after the other differed by ±10% on their own).
A recorded block holds its record step in its middle, and before handing over it waits
for the recorder's writer thread to finish what it was given: the writer's work is
counted against recording, none of it spills into the unrecorded trainer's turn. The
recorded trainer's first turn lasts until its writer has caught up with the dense first
records (28 in 100 steps), which wait in memory while training goes on, as in a run.

Prints, per repeat and as the median with its range: the seconds of each trainer, their
ratio, and the extra milliseconds per record; then the run's size on disk per record,
by group of arrays (``features``, ``backward``: the probes' gradients, ``params``, ...).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from labkit.data import load_mnist
from labkit.models import lenet
from labkit.optim import Adam
from labkit.recorder import Recorder, RecordSchedule, choose_probes
from labkit.runs import open_run
from labkit.train import Callback, Trainer

BATCH = 32


class Turns:
    """A baton two trainers pass every ``block`` steps: one trains while the other waits."""

    def __init__(self, block: int) -> None:
        self.block = block
        self.turn = 0  # which trainer holds the baton
        self.busy = [0.0, 0.0]  # seconds each spent holding it
        self.changed = threading.Condition()
        self.finished = [False, False]

    def wait_for(self, who: int) -> float:
        with self.changed:
            self.changed.wait_for(lambda: self.turn == who or self.finished[1 - who])
        return time.perf_counter()

    def hand_over(self, who: int, since: float, *, last: bool = False) -> None:
        with self.changed:
            self.busy[who] += time.perf_counter() - since
            self.finished[who] = self.finished[who] or last
            self.turn = 1 - who
            self.changed.notify_all()


class TakeTurns(Callback):
    """Hands the baton over halfway between two of ``schedule``'s regular records (they
    fall on multiples of its period, the turn's length); a recorded trainer first waits
    for its recorder's writer to catch up."""

    def __init__(
        self, turns: Turns, who: int, schedule: RecordSchedule, recorder: Recorder | None
    ) -> None:
        self.turns, self.who, self.recorder = turns, who, recorder
        self.offset = schedule.every // 2
        # the first turn takes in the dense records of the first steps and the steps in
        # which the writer catches up with them, as it does in a run (they wait for it
        # in memory): it ends at the first turn's end where the writer has caught up
        self.first = schedule.dense_until
        self.caught_up = recorder is None

    def on_train_begin(self, trainer: Trainer) -> None:
        self.since = self.turns.wait_for(self.who)

    def on_step_end(self, trainer: Trainer, step: int, logs: dict) -> None:
        if step > self.first and (step - self.offset) % self.turns.block == 0:
            self.caught_up = self.caught_up or not self.recorder.writing
            if not self.caught_up:
                return
            self.drain()
            self.turns.hand_over(self.who, self.since)
            self.since = self.turns.wait_for(self.who)

    def drain(self) -> None:
        if self.recorder is not None:
            self.recorder.flush()

    def finish(self) -> None:
        self.turns.hand_over(self.who, self.since, last=True)


def interleaved(data, epochs: int, run_path: Path) -> tuple[float, float, int]:
    """Seconds of the unrecorded and of the recorded trainer, and the records written."""
    probes = choose_probes(data.y_test)
    recorder = Recorder(run_path, data.x_test[probes], data.y_test[probes])
    schedule = recorder.schedule
    turns = Turns(schedule.every)

    def train(who: int, recorder: Recorder | None) -> None:
        network = lenet(seed=0)
        baton = TakeTurns(turns, who, schedule, recorder)
        callbacks = [recorder, baton] if recorder is not None else [baton]
        trainer = Trainer(
            network, Adam(network), batch_size=BATCH, seed=0, callbacks=callbacks, progress=False
        )
        try:
            trainer.fit(data, epochs)  # the recorder closes its run in on_train_end
        finally:
            baton.finish()

    threads = [
        threading.Thread(target=train, args=(0, None)),
        threading.Thread(target=train, args=(1, recorder)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return turns.busy[0], turns.busy[1], len(open_run(run_path).steps)


def group_sizes(path: Path) -> dict[str, int]:
    """Bytes on disk (whole blocks) of each top-level group of the run's arrays."""
    store = next(p for p in path.iterdir() if p.suffix == ".zarr")
    return {
        group.name: sum(f.stat().st_blocks * 512 for f in group.rglob("*") if f.is_file())
        for group in sorted(store.iterdir())
        if group.is_dir()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", default=os.environ.get("LABKIT_DATA", "auto"))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    data = load_mnist(args.data)
    scratch = Path(tempfile.mkdtemp(prefix="labkit-bench-"))
    steps = args.epochs * -(-len(data.x_train) // BATCH)
    print(f"data: {data.source}; lenet, batch {BATCH}, {args.epochs} epoch(s) = {steps} steps")
    print("| repeat | without recording | with the default recorder | ratio | ms per record |")
    print("|---|---|---|---|---|")
    ratios, per_record = [], []
    try:
        for repeat in range(args.repeats):
            path = scratch / f"run{repeat}"
            plain, recorded, records = interleaved(data, args.epochs, path)
            ratios.append(recorded / plain)
            per_record.append((recorded - plain) / records * 1e3)
            print(
                f"| {repeat + 1} | {plain:.1f} s | {recorded:.1f} s | {ratios[-1]:.3f} "
                f"| {per_record[-1]:.1f} |",
                flush=True,
            )
            size, groups = open_run(path).size_bytes(), group_sizes(path)
            if repeat < args.repeats - 1:
                shutil.rmtree(path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"| median | | | {statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f}) "
        f"| {statistics.median(per_record):.1f} ({min(per_record):.1f}–{max(per_record):.1f}) |"
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
