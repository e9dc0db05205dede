"""``fit``: train any network on MNIST into a run folder, recorded, weights saved at the
end — what ``labkit train`` does, as one call from Python.

    from labkit.fit import fit
    result = fit(my_network, epochs=1, run="runs/mine")  # the bundled sample by default
    result.test_accuracy, result.weights  # runs/mine/weights.npz
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labkit import __version__
from labkit.data import MNIST, load_mnist
from labkit.errors import LabkitError, one_line
from labkit.network import Network
from labkit.optim import OPTIMIZERS
from labkit.parallel import thread_count
from labkit.recorder import Recorder, RecordSchedule, choose_probes
from labkit.train import Callback, Trainer, TrainResult

DEFAULT_LR = {"sgd": 0.1, "momentum": 0.01, "adam": 1e-3}
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
    core). ``model`` is the ``--model`` text that built the network, kept in the run and
    the weights so readers know which code to pass. A folder that already holds trained
    weights is refused unless ``overwrite``. Ctrl-C stops at the end of a step
    (``result.interrupted``).
    """
    data = data if isinstance(data, MNIST) else load_mnist(data)
    if optimizer not in OPTIMIZERS:
        known = ", ".join(sorted(OPTIMIZERS))
        raise LabkitError(f"unknown optimizer {optimizer!r} (known: {known})")
    check_fits(network, data)
    out = Path(run)
    weights_path = out / WEIGHTS
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
        "data": data.source,
        "labkit_version": __version__,
    }
    all_callbacks = list(callbacks)
    if record:
        probes = choose_probes(data.y_test, seed=seed)
        all_callbacks.append(
            Recorder(
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
            )
        )
    trainer = Trainer(
        network,
        OPTIMIZERS[optimizer](network, lr=lr),
        batch_size=batch_size,
        seed=seed,
        callbacks=all_callbacks,
        progress=progress,
        threads=threads,
    )
    start = time.perf_counter()
    result = trainer.fit(data, epochs)  # the recorder closes the run however it ends
    network.save(weights_path, model=model)
    history = {
        "config": config,
        "epochs": [epoch.as_dict() for epoch in result.epochs],
        "interrupted": result.interrupted,
        "steps": result.steps,
        "seconds": time.perf_counter() - start,
    }
    (out / HISTORY).write_text(json.dumps(history, indent=2) + "\n")
    return FitResult(out, weights_path, history, result, network)
