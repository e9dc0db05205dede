"""``labkit train``: train a network on MNIST with a progress bar; save weights and history.

Its parser needs only :mod:`labkit.options`; NumPy and the trainer are imported by
:func:`run` (``labkit --help`` stays light).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from labkit.commands.args import (
    DATA_HELP,
    add_model_argument,
    default_data,
    positive_float,
    positive_int,
    seed,
)
from labkit.options import DEFAULT_LR, RECORD_EVERY, SPLITS


def add_parser(commands) -> None:
    train = commands.add_parser("train", help="train a network (a preset or yours) on MNIST")
    add_model_argument(train)
    train.add_argument(
        "--epochs", type=positive_int, default=5, help="passes over the training digits"
    )
    train.add_argument(
        "--batch-size", type=positive_int, default=32, help="digits per training step"
    )
    defaults = ", ".join(f"{name} {lr:g}" for name, lr in sorted(DEFAULT_LR.items()))
    train.add_argument(
        "--lr",
        type=positive_float,
        default=None,
        help=f"learning rate (default: the optimizer's: {defaults})",
    )
    train.add_argument(
        "--optimizer",
        choices=sorted(DEFAULT_LR),  # one per optimizer
        default="adam",
        help="how the gradients update the weights",
    )
    train.add_argument(
        "--seed",
        type=seed,
        default=0,
        help="seeds the initial weights, the shuffling and the probe digits; the same seed "
        "and --threads give bit-identical weights",
    )
    train.add_argument("--data", default=None, help=DATA_HELP)
    train.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="output folder (default: runs/MODEL-TIMESTAMP)",
    )
    train.add_argument(
        "--record-every",
        type=positive_int,
        default=RECORD_EVERY,
        metavar="N",
        help="record activations, gradients and weights every N steps, and more often at the start",
    )
    train.add_argument(
        "--no-record", action="store_true", help="save only the weights and history, no recording"
    )
    train.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="slices each batch is split in (default: every core; 1: serial)",
    )
    train.add_argument(
        "--split",
        choices=SPLITS,
        default=None,
        help="what computes the slices: worker processes that share memory (the default "
        "where the platform can fork) or threads; the same weights either way",
    )
    train.set_defaults(handler=run)


def epoch_line(result, epochs: int) -> str:
    """One epoch's line: loss, accuracies, speed and time (a :class:`labkit.train.EpochResult`)."""
    test = "-" if result.test_accuracy is None else f"{result.test_accuracy:.2%}"
    return (
        f"epoch {result.epoch}/{epochs}  loss {result.train_loss:.4f}  "
        f"train {result.train_accuracy:.2%}  test {test}  "
        f"{result.images_per_second:,.0f} img/s  {result.seconds:.1f} s"
    )


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from labkit.data import load_mnist
    from labkit.fit import fit
    from labkit.train import Callback
    from labkit.usercode import load_model

    class EpochPrinter(Callback):
        """One line per epoch on stdout, written so that it doesn't break the progress bar."""

        def on_epoch_end(self, trainer, result) -> None:
            tqdm.write(epoch_line(result, args.epochs), file=sys.stdout)

    data = load_mnist(args.data or default_data())
    model = load_model(args.model, seed=args.seed)
    network = model.network
    out = args.out or Path("runs") / f"{model.label}-{time.strftime('%Y%m%d-%H%M%S')}"
    lr = args.lr or DEFAULT_LR[args.optimizer]
    recording = "" if args.no_record else f", recording every {args.record_every} steps"
    print(
        f"training {model.label} ({network.parameter_count():,} parameters) on {data.source}: "
        f"{args.optimizer} lr {lr:g}, batch {args.batch_size}, {args.epochs} epochs"
        f"{recording} -> {out}"
    )
    fitted = fit(
        network,
        run=out,
        epochs=args.epochs,
        data=data,
        optimizer=args.optimizer,
        lr=lr,
        batch_size=args.batch_size,
        seed=args.seed,
        threads=args.threads,
        split=args.split,
        record=not args.no_record,
        record_every=args.record_every,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        model=args.model,
        callbacks=[EpochPrinter()],
    )
    if fitted.interrupted:
        number = fitted.signal or signal.SIGINT
        steps = fitted.result.steps
        by = signal.Signals(number).name
        print(f"interrupted ({by}) after {steps} steps; weights so far saved in {fitted.weights}")
        return 128 + number  # the shell's convention: 130 for Ctrl-C, 143 for SIGTERM
    print(f"test accuracy {fitted.test_accuracy:.2%}; weights saved in {fitted.weights}")
    return 0
