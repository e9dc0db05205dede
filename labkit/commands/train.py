"""``labkit train``: train a network on MNIST with a progress bar; save weights and history."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from labkit import __version__
from labkit.commands.args import (
    DATA_HELP,
    add_model_argument,
    default_data,
    positive_float,
    positive_int,
)
from labkit.data import MNIST, load_mnist
from labkit.errors import LabkitError
from labkit.network import Network
from labkit.optim import OPTIMIZERS
from labkit.parallel import thread_count
from labkit.recorder import Recorder, RecordSchedule, choose_probes
from labkit.train import Callback, EpochResult, Trainer
from labkit.usercode import load_model

DEFAULT_LR = {"sgd": 0.1, "momentum": 0.01, "adam": 1e-3}


def add_parser(commands) -> None:
    train = commands.add_parser("train", help="train a network (a preset or yours) on MNIST")
    add_model_argument(train)
    train.add_argument("--epochs", type=positive_int, default=5)
    train.add_argument("--batch-size", type=positive_int, default=32)
    train.add_argument(
        "--lr", type=positive_float, default=None, help="learning rate (default per optimizer)"
    )
    train.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--data", default=None, help=DATA_HELP)
    train.add_argument(
        "--out", type=Path, default=None, help="output folder (default: runs/MODEL-TIMESTAMP)"
    )
    train.add_argument(
        "--record-every",
        type=positive_int,
        default=RecordSchedule.every,
        help="record activations, gradients and weights every N steps (denser at the start)",
    )
    train.add_argument("--no-record", action="store_true", help="save only the weights")
    train.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="threads each batch is split over (default: every core; 1: serial)",
    )
    train.set_defaults(handler=run)


class _EpochPrinter(Callback):
    """One line per epoch on stdout, written so that it doesn't break the progress bar."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, trainer: Trainer, result: EpochResult) -> None:
        test = "-" if result.test_accuracy is None else f"{result.test_accuracy:.2%}"
        tqdm.write(
            f"epoch {result.epoch}/{self.epochs}  loss {result.train_loss:.4f}  "
            f"train {result.train_accuracy:.2%}  test {test}  "
            f"{result.images_per_second:,.0f} img/s  {result.seconds:.1f} s",
            file=sys.stdout,
        )


def check_fits(network: Network, data: MNIST) -> None:
    """Before training: the layers' shapes chain from the digits to one output per class."""
    shapes = network.output_shapes(tuple(data.x_train.shape[1:]))
    classes = int(data.y_train.max()) + 1
    if int(np.prod(shapes[-1])) != classes:
        raise LabkitError(
            f"{network.layers[-1].describe()} gives {shapes[-1]} per sample; "
            f"the loss needs {classes} outputs (one per class)"
        )


def run(args: argparse.Namespace) -> int:
    data = load_mnist(args.data or default_data())
    model = load_model(args.model, seed=args.seed)
    network = model.network
    check_fits(network, data)
    out = args.out or Path("runs") / f"{model.label}-{time.strftime('%Y%m%d-%H%M%S')}"
    weights_path = out / "weights.npz"
    if weights_path.exists() and not args.overwrite:
        raise LabkitError(
            f"{out}: already holds a trained run; choose another --out or --overwrite"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabkitError(f"{out}: cannot create the output folder ({exc.strerror})") from None

    lr = args.lr or DEFAULT_LR[args.optimizer]
    optimizer = OPTIMIZERS[args.optimizer](network, lr=lr)
    config = {
        "model": args.model,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": lr,
        "optimizer": args.optimizer,
        "seed": args.seed,
        "threads": thread_count(args.threads),  # with the seed it fixes the rounding
        "data": data.source,
        "labkit_version": __version__,
    }
    callbacks: list[Callback] = [_EpochPrinter(args.epochs)]
    recorder = None
    if not args.no_record:
        probes = choose_probes(data.y_test, seed=args.seed)
        recorder = Recorder(
            out,
            data.x_test[probes],
            data.y_test[probes],
            schedule=RecordSchedule(every=args.record_every),
            manifest={
                "config": config,
                "model": args.model,
                "seed": args.seed,
                "data_source": data.source,
                "probe_index": probes.tolist(),
            },
            overwrite=args.overwrite,
        )
        callbacks.append(recorder)
    recording = "" if recorder is None else f", recording every {args.record_every} steps"
    print(
        f"training {model.label} ({network.parameter_count():,} parameters) on {data.source}: "
        f"{args.optimizer} lr {lr:g}, batch {args.batch_size}, {args.epochs} epochs"
        f"{recording} -> {out}"
    )
    trainer = Trainer(
        network,
        optimizer,
        batch_size=args.batch_size,
        seed=args.seed,
        callbacks=callbacks,
        progress=not args.no_progress,
        threads=args.threads,
    )
    start = time.perf_counter()
    result = trainer.fit(data, args.epochs)  # the recorder closes the run however it ends
    network.save(weights_path, model=model.user_spec)
    history = {
        "config": config,
        "epochs": [epoch.as_dict() for epoch in result.epochs],
        "interrupted": result.interrupted,
        "steps": result.steps,
        "seconds": time.perf_counter() - start,
    }
    (out / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    if result.interrupted:
        print(f"interrupted after {result.steps} steps; weights so far saved in {weights_path}")
        return 130
    final = result.epochs[-1].test_accuracy
    print(f"test accuracy {final:.2%}; weights saved in {weights_path}")
    return 0
