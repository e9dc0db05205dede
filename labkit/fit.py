"""``fit``: train any network on MNIST into a run folder, recorded, weights saved at the
end — what ``labkit train`` does, as one call from Python.

    from labkit.fit import fit
    result = fit(my_network, epochs=1, run="runs/mine")  # the bundled sample by default
    result.test_accuracy, result.weights  # runs/mine/weights.npz
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labkit import __version__
from labkit.atomic import atomic_write
from labkit.data import MNIST, load_mnist
from labkit.errors import LabkitError, one_line
from labkit.network import Network
from labkit.optim import OPTIMIZERS
from labkit.options import DEFAULT_LR
from labkit.parallel import resolve_split, thread_count
from labkit.recorder import Recorder, RecordSchedule, choose_probes
from labkit.runs.files import acquire_lock, release_lock
from labkit.runs.format import LOCK, MANIFEST
from labkit.train import Callback, StopSignals, Trainer, TrainResult

WEIGHTS = "weights.npz"
HISTORY = "history.json"


@dataclass
class FitResult:
    """Where the run went and how training went (``result``: every epoch's figures)."""

    run: Path
    weights: Path
    history: dict
    result: TrainResult
    network: Network
    signal: int | None = None  # the signal that stopped it (SIGINT, SIGTERM), if one did

    @property
    def interrupted(self) -> bool:
        return self.result.interrupted

    @property
    def test_accuracy(self) -> float | None:
        """The last epoch's test accuracy (None if no epoch finished)."""
        return self.result.epochs[-1].test_accuracy if self.result.epochs else None


def check_fits(network: Network, data: MNIST) -> None:
    """Before training: the layers' shapes chain from the digits to one output per class
    (else a LabkitError naming the layers and shapes)."""
    shapes = network.output_shapes(tuple(data.x_train.shape[1:]))
    classes = int(data.y_train.max()) + 1
    if int(np.prod(shapes[-1])) != classes:
        raise LabkitError(
            f"{network.layers[-1].describe()} gives {shapes[-1]} per sample; "
            f"the loss needs {classes} outputs (one per class)"
        )


def refuse_trained(run: str | Path, overwrite: bool) -> None:
    """LabkitError if ``run`` already holds trained weights and ``overwrite`` is off."""
    if (Path(run) / WEIGHTS).exists() and not overwrite:
        raise LabkitError(
            f"{run}: already holds a trained run; choose another folder or overwrite it "
            "(--overwrite)"
        )


def fit(
    network: Network,
    *,
    run: str | Path,
    epochs: int = 5,
    data: str | MNIST = "sample",
    optimizer: str = "adam",
    lr: float | None = None,
    batch_size: int = 32,
    seed: int = 0,
    threads: int | None = None,
    split: str | None = None,
    record: bool = True,
    record_every: int = RecordSchedule.every,
    overwrite: bool = False,
    progress: bool = True,
    model: str | None = None,
    callbacks: Sequence[Callback] = (),
) -> FitResult:
    """Train ``network`` in place, recording into the folder ``run``, and save its weights
    (``run/weights.npz``) and history (``run/history.json``) however training ends.

    ``data`` is a :class:`labkit.data.MNIST` or a source for :func:`load_mnist`; ``lr``
    defaults per optimizer (``DEFAULT_LR``); ``threads`` splits each batch (default every
    core), its slices run on worker processes or threads (``split``, default processes
    where the platform can fork: the same numbers either way). ``model`` is the
    ``--model`` text that built the network, kept in the run and the weights so readers
    know which code to pass. A folder that already holds trained
    weights is refused unless ``overwrite``. Ctrl-C or SIGTERM stops at the end of a step,
    and what trained is saved (``interrupted``, ``signal``); a write that fails (a full
    disk, an unwritable folder) is one :class:`LabkitError` line naming the file.
    """
    data = data if isinstance(data, MNIST) else load_mnist(data)
    if optimizer not in OPTIMIZERS:
        known = ", ".join(sorted(OPTIMIZERS))
        raise LabkitError(f"unknown optimizer {optimizer!r} (known: {known})")
    check_fits(network, data)
    out = Path(run)
    refuse_trained(out, overwrite)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabkitError(f"{out}: cannot create the output folder ({one_line(exc)})") from None
    lr = lr or DEFAULT_LR[optimizer]
    config = {
        "model": model,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "optimizer": optimizer,
        "seed": seed,
        "threads": thread_count(threads),  # with the seed it fixes the rounding
        "split": resolve_split(split),  # the same rounding either way: for the record
        "data": data.source,
        "labkit_version": __version__,
    }
    all_callbacks = list(callbacks)
    recorder = None
    if record:
        probes = choose_probes(data.y_test, seed=seed)
        recorder = Recorder(
            out,
            data.x_test[probes],
            data.y_test[probes],
            schedule=RecordSchedule(every=record_every),
            manifest={
                "config": config,
                "model": model,
                "seed": seed,
                "data_source": data.source,
                "probe_index": probes.tolist(),
            },
            overwrite=overwrite,
            finish=False,  # closed below, once the weights are on disk
        )
        all_callbacks.append(recorder)
    stop = StopSignals()
    trainer = Trainer(
        network,
        OPTIMIZERS[optimizer](network, lr=lr),
        batch_size=batch_size,
        seed=seed,
        callbacks=all_callbacks,
        progress=progress,
        threads=threads,
        split=split,
        stop=stop,
    )
    lock = None if record else claim_folder(out, overwrite)
    try:
        with stop:  # SIGINT and SIGTERM: stop at a step, then save as at the end
            start = time.perf_counter()
            try:
                result = trainer.fit(data, epochs)  # a failure closes the run as failed
            except OSError as exc:
                raise LabkitError(
                    f"{exc.filename or out}: cannot record the run ({one_line(exc)}); training "
                    f"stopped at step {trainer.step}, the records before it are readable"
                ) from None
            stop.defer()  # from here on a signal only marks the run interrupted
            history = _save(network, out, model, config, result, stop, start, recorder)
            if recorder is not None:
                recorder.close("interrupted" if stop.requested else "completed")
    finally:
        if lock is not None:
            release_lock(lock)
    result.interrupted = result.interrupted or stop.requested
    return FitResult(out, out / WEIGHTS, history, result, network, stop.received)


def _save(network, out: Path, model, config, result, stop, start, recorder) -> dict:
    """Write the weights, then the history, each atomically: a run is never closed as
    completed before its weights are whole on disk. A write that fails closes the run as
    failed and is one LabkitError line naming the file."""
    target = out / WEIGHTS
    try:
        network.save(target, model=model)
        history = {  # after the weights: a signal while they were saved counts
            "config": config,
            "epochs": [epoch.as_dict() for epoch in result.epochs],
            "interrupted": result.interrupted or stop.requested,
            "steps": result.steps,
            "seconds": time.perf_counter() - start,
        }
        target = out / HISTORY
        atomic_write(target, json.dumps(history, indent=2) + "\n")
    except OSError as exc:
        if recorder is not None:
            recorder.close("failed")
        raise LabkitError(f"{target}: cannot save it ({one_line(exc)})") from None
    return history


def claim_folder(out: Path, overwrite: bool) -> int:
    """For a training that records nothing: the folder's writer lock, held while it
    trains (a second training into it is refused), with the refusals of recording: a run
    being written, or a run already there without ``overwrite``; with it, the old run's
    files go, so no foreign records stay beside the new weights. Returns the lock's fd."""
    lock = acquire_lock(out)  # LabkitError when another process holds it
    if (out / MANIFEST).exists():
        if not overwrite:
            release_lock(lock)
            raise LabkitError(f"{out}: a run already exists there (not overwriting it)")
        for entry in os.scandir(out):
            if entry.name == LOCK:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
    return lock
