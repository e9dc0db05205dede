"""``labkit inspect``: kernel-grid and feature-map figures of a recorded run, with matplotlib
(imported when the command runs, not by its parser)."""

from __future__ import annotations

import argparse
from pathlib import Path

from labkit.commands.args import add_figure_arguments, add_model_argument, add_step_argument
from labkit.errors import LabkitError


def add_parser(commands) -> None:
    parser = commands.add_parser("inspect", help="write kernel and feature-map figures of a run")
    parser.add_argument("run", type=Path, help="a run folder written by labkit train")
    add_step_argument(parser, "drawn")
    parser.add_argument(
        "--layer",
        default=None,
        help="one layer, by key (03-Convolutional) or index (default: every layer)",
    )
    parser.add_argument(
        "--image", type=int, default=0, help="which probe digit's feature maps, 0-15"
    )
    add_figure_arguments(parser, "RUN/figures")
    add_model_argument(
        parser,
        default=None,
        what="; optional: the figures need no code, but a --model is checked against the run "
        "(default: none)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from labkit.inspect import feature_map_figure, kernel_grid_figure
    from labkit.recording import open_recording
    from labkit.usercode import architecture_difference, load_model

    recorded = open_recording(args.run)
    if args.model is not None:  # read only the arrays; but never draw another network's run
        ours = load_model(args.model).network.architecture(partial=True)
        problem = architecture_difference(ours, recorded.manifest.get("architecture") or ours)
        if problem:
            raise LabkitError(f"--model {args.model} is not the network of {args.run}: {problem}")
    if not len(recorded):
        raise LabkitError(f"{args.run}: the run has no completed record yet")
    first, last = int(recorded.steps[0]), int(recorded.steps[-1])
    step = last if args.step is None else args.step
    if not first <= step <= last:
        raise LabkitError(
            f"--step {step}: outside the run ({args.run} recorded steps {first} to {last})"
        )
    step_used = recorded.nearest_step(step)
    probes = len(recorded.probe_labels)
    if not 0 <= args.image < probes:
        raise LabkitError(f"--image must be between 0 and {probes - 1}, got {args.image}")
    layers = (
        range(len(recorded.layers)) if args.layer is None else [recorded.layer_index(args.layer)]
    )
    out = args.out or args.run / "figures"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabkitError(f"{out}: cannot create the folder ({exc.strerror})") from None
    if step_used != step:
        print(f"no record at step {step}; using the nearest, step {step_used}")
    label = int(recorded.probe_labels[args.image])
    image = recorded.probe_images[args.image]
    written = []
    for layer in layers:
        key = recorded.key(layer)
        if layer in recorded.convolutions:
            kernels = recorded.kernels(layer, step_used)
            figure = kernel_grid_figure(kernels, f"{key} kernels, step {step_used}")
            written.append(_save(figure, out / f"kernels-{key}-step{step_used}.{args.format}"))
        maps = recorded.feature_map(layer, step_used)[args.image]
        title = f"{key} output, probe {args.image} (digit {label}), step {step_used}"
        figure = feature_map_figure(
            maps,
            title,
            layer_class=recorded.layers[layer]["class"],
            previous=recorded.key(layer - 1) if layer else None,
            last=layer == len(recorded.layers) - 1,
            image=image,
            label=label,
        )
        name = f"features-{key}-step{step_used}-probe{args.image}.{args.format}"
        written.append(_save(figure, out / name))
    for path in written:
        print(path)
    return 0


def _save(figure, path: Path) -> Path:
    try:
        figure.savefig(path, dpi=110)
    except OSError as exc:
        raise LabkitError(f"{path}: cannot write the figure ({exc.strerror})") from None
    return path
