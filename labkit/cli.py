"""The ``labkit`` command: ``train`` and ``evaluate`` (more subcommands join as they land).

User mistakes (bad options, missing or corrupt files) end in one line on stderr and exit
status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from labkit import __version__
from labkit.data import load_mnist
from labkit.errors import LabkitError
from labkit.inspect import confusion_figure
from labkit.metrics import confusion_matrix, format_confusion
from labkit.models import MODELS
from labkit.network import Network
from labkit.optim import OPTIMIZERS
from labkit.train import Callback, EpochResult, Trainer

DEFAULT_LR = {"sgd": 0.1, "momentum": 0.01, "adam": 1e-3}
DATA_HELP = (
    "'sample' (the bundled 2,000 train / 500 test digits), 'auto' (LABKIT_DATA, then the "
    "Keras cache, then a download), or a path to mnist.npz or a folder of IDX files "
    "(default: $LABKIT_DATA if set, else sample)"
)


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (no usage block), still with exit status 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def default_data() -> str:
    return os.environ.get("LABKIT_DATA") or "sample"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="labkit", description="A gradient-checking lab for a NumPy CNN.")
    parser.add_argument("--version", action="version", version=f"labkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a preset network on MNIST")
    train.add_argument("--model", choices=sorted(MODELS), default="lenet")
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
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser(
        "evaluate", help="accuracy and confusion matrix of saved weights"
    )
    evaluate.add_argument("weights", type=Path, help="weights.npz, or a folder holding one")
    evaluate.add_argument("--data", default=None, help=DATA_HELP)
    evaluate.add_argument(
        "--figure", type=Path, default=None, help="confusion figure (default: beside the weights)"
    )
    evaluate.set_defaults(handler=cmd_evaluate)
    return parser


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


def cmd_train(args: argparse.Namespace) -> int:
    data = load_mnist(args.data or default_data())
    out = args.out or Path("runs") / f"{args.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    weights_path = out / "weights.npz"
    if weights_path.exists():
        raise LabkitError(f"{out}: already holds trained weights; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabkitError(f"{out}: cannot create the output folder ({exc.strerror})") from None

    network = MODELS[args.model](seed=args.seed)
    lr = args.lr or DEFAULT_LR[args.optimizer]
    optimizer = OPTIMIZERS[args.optimizer](network, lr=lr)
    config = {
        "model": args.model,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": lr,
        "optimizer": args.optimizer,
        "seed": args.seed,
        "data": data.source,
        "labkit_version": __version__,
    }
    print(
        f"training {args.model} ({network.parameter_count():,} parameters) on {data.source}: "
        f"{args.optimizer} lr {lr:g}, batch {args.batch_size}, {args.epochs} epochs -> {out}"
    )
    trainer = Trainer(
        network,
        optimizer,
        batch_size=args.batch_size,
        seed=args.seed,
        callbacks=[_EpochPrinter(args.epochs)],
        progress=not args.no_progress,
    )
    start = time.perf_counter()
    result = trainer.fit(data, args.epochs)
    network.save(weights_path)
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    path = args.weights / "weights.npz" if args.weights.is_dir() else args.weights
    network = Network.load(path)
    data = load_mnist(args.data or default_data())
    try:
        outputs = network.predict(data.x_test)
    except ValueError as exc:
        raise LabkitError(f"{path}: this network cannot read MNIST digits ({exc})") from None
    predicted = outputs.reshape(len(outputs), -1).argmax(axis=1)
    matrix = confusion_matrix(data.y_test, predicted)
    print(f"accuracy {matrix.trace() / matrix.sum():.2%} on {len(predicted):,} test digits")
    print(f"data: {data.source}")
    print(format_confusion(matrix))
    figure_path = args.figure or path.parent / "confusion.png"
    try:
        confusion_figure(matrix).savefig(figure_path, dpi=120)
    except OSError as exc:
        raise LabkitError(f"{figure_path}: cannot write the figure ({exc.strerror})") from None
    print(f"confusion matrix figure: {figure_path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``labkit`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except LabkitError as exc:
        print(f"labkit {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
