"""``labkit evaluate``: accuracy, confusion matrix and its figure for saved weights.

NumPy, matplotlib and the network are imported when the command runs, not by its parser.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from labkit.commands.args import DATA_HELP, add_model_argument, default_data
from labkit.errors import LabkitError


def add_parser(commands) -> None:
    evaluate = commands.add_parser(
        "evaluate", help="accuracy and confusion matrix of saved weights"
    )
    evaluate.add_argument(
        "weights", type=Path, help="weights.npz, or a run folder holding one (labkit train's)"
    )
    add_model_argument(
        evaluate,
        default=None,
        what="; needed for weights of your own layers (default: the architecture saved with "
        "the weights, labkit's layers only)",
    )
    evaluate.add_argument(
        "--data",
        default=None,
        help=DATA_HELP.replace("(default: ", "(default: the data the run was trained on, else "),
    )
    evaluate.add_argument(
        "--figure",
        type=Path,
        default=None,
        metavar="FILE",
        help="where to write the confusion-matrix figure, in any format matplotlib writes "
        "(default: confusion-DATA.png beside the weights, DATA naming "
        "the data set: confusion-sample.png, confusion-mnist.png, ...)",
    )
    evaluate.set_defaults(handler=run)


def figure_format(path: Path) -> str:
    """Before any work: the format of a figure file, which matplotlib must know (a name
    without extension is PNG, written under that very name)."""
    from labkit.inspect import figure_formats

    extension = path.suffix[1:].lower()
    formats = figure_formats()
    if extension and extension not in formats:
        raise LabkitError(
            f"--figure {path}: matplotlib cannot write .{extension} files "
            f"(it writes {', '.join(formats)})"
        )
    return extension or "png"


def trained_on(folder: Path) -> str | None:
    """The data the run in ``folder`` was trained on (an :attr:`MNIST.source`), as its
    history records it, or its manifest for a run that stopped before; None if neither."""
    from labkit.fit import HISTORY
    from labkit.runs import open_run

    try:
        recorded = json.loads((folder / HISTORY).read_text(encoding="utf-8"))["config"]["data"]
    except (OSError, ValueError, KeyError, TypeError):
        try:
            recorded = open_run(folder).manifest.get("data_source")
        except LabkitError:
            recorded = None
    return recorded if isinstance(recorded, str) and recorded else None


def _load_data(args: argparse.Namespace, folder: Path):
    """``--data``, else the data the run was trained on, else the default; and whether it
    is the run's own."""
    from labkit.data import load_mnist, source_of

    recorded = None if args.data else trained_on(folder)
    if recorded is None:
        return load_mnist(args.data or default_data()), False
    try:
        return load_mnist(source_of(recorded)), True
    except LabkitError as exc:
        raise LabkitError(
            f"{exc}; it is the data {folder} was trained on; pass --data for other digits"
        ) from None


def run(args: argparse.Namespace) -> int:
    from labkit.data import NUM_CLASSES, data_name
    from labkit.inspect import confusion_figure
    from labkit.metrics import confusion_matrix, format_confusion
    from labkit.usercode import load_model, load_network

    if args.figure is not None:
        figure_format(args.figure)
    path = args.weights / "weights.npz" if args.weights.is_dir() else args.weights
    model = None if args.model is None else load_model(args.model)
    network = load_network(path, model)
    data, own = _load_data(args, path.parent)
    try:
        outputs = network.predict(data.x_test)
    except ValueError as exc:
        raise LabkitError(f"{path}: this network cannot read MNIST digits ({exc})") from None
    outputs = outputs.reshape(len(outputs), -1)
    if outputs.shape[1] != NUM_CLASSES:
        raise LabkitError(
            f"{path}: this network gives {outputs.shape[1]:,} outputs per digit, "
            f"not one per class ({NUM_CLASSES})"
        )
    predicted = outputs.argmax(axis=1)
    matrix = confusion_matrix(data.y_test, predicted)
    print(f"accuracy {matrix.trace() / matrix.sum():.2%} on {len(predicted):,} test digits")
    print(f"data: {data.source}" + (" (the run's own)" if own else ""))
    print(format_confusion(matrix))
    figure_path = args.figure or path.parent / f"confusion-{data_name(data.source)}.png"
    try:
        confusion_figure(matrix).savefig(figure_path, dpi=120, format=figure_format(figure_path))
    except OSError as exc:
        raise LabkitError(f"{figure_path}: cannot write the figure ({exc.strerror})") from None
    print(f"confusion matrix figure: {figure_path}")
    return 0
