"""``labkit gradcheck``: finite-difference checks of every layer and of the whole network.

NumPy and the checker are imported when the command runs, not by its parser.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from labkit.commands.args import add_model_argument, positive_int, seed
from labkit.errors import LabkitError, one_line
from labkit.options import ORACLES

if TYPE_CHECKING:
    from labkit.layers import Layer
    from labkit.network import Network


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "gradcheck", help="check every layer's backward pass against finite differences"
    )
    add_model_argument(
        parser,
        default=None,
        what="; or NAME a single layer (an instance, or a class or function making one) "
        "(default: lenet, or with --run the run's own layers)",
    )
    parser.add_argument(
        "--run",
        type=Path,
        default=None,
        help="check the weights saved in this run folder (with --model for your own layers), "
        "and store the report in it (default: a fresh network, nothing stored)",
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help="directional checks instead of every element (seconds instead of minutes)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the report here, as JSON (default: only printed)",
    )
    parser.add_argument(
        "--oracle",
        choices=ORACLES,
        default=None,
        help="also compare every layer with TensorFlow's (default: no oracle)",
    )
    parser.add_argument(
        "--max-elements",
        type=positive_int,
        default=None,
        metavar="N",
        help="full mode: check at most N random elements per tensor (default: all); a "
        "fault touching a fraction f of a tensor's elements escapes with probability at "
        "most (1 - f)**N (N = 500: 0.7%% for f = 1%%)",
    )
    parser.add_argument(
        "--batch", type=positive_int, default=2, help="test digits the network is checked on"
    )
    parser.add_argument(
        "--seed",
        type=seed,
        default=0,
        help="seeds the fresh network, its random biases, the digits' noise and the check's "
        "random directions and elements",
    )
    parser.set_defaults(handler=run)


def _subject(args: argparse.Namespace) -> tuple[Network | Layer, str]:
    """What to check (a fresh network with random biases, a single layer, or a run's
    weights) and how the report names it."""
    from labkit.checks import jitter_biases
    from labkit.gradcheck import layer_name
    from labkit.usercode import load_model, load_network

    spec = args.model or (None if args.run else "lenet")
    model = None if spec is None else load_model(spec, args.seed, allow_layer=args.run is None)
    if args.run is None:
        fresh = f"fresh, seed {args.seed}"
        if model.layer is not None:
            return model.layer, f"{layer_name(model.layer)} from {spec} ({fresh})"
        return jitter_biases(model.network, args.seed), f"{model.label} ({fresh}, random biases)"
    if not args.run.is_dir():
        raise LabkitError(f"{args.run}: no such run folder")
    return load_network(args.run / "weights.npz", model), f"run {args.run}"


def sampling_note(sampled: int) -> str:
    """What a random subset of ``sampled`` elements per tensor guarantees."""
    from labkit.differences import miss_chance

    chances = ", ".join(
        f"{fraction:.0%}: {miss_chance(sampled, fraction):.2g}" for fraction in (0.01, 0.05, 0.1)
    )
    return (
        f"sampled at most {sampled} elements per tensor: a fault touching a fraction f of a "
        f"tensor's elements escapes with probability at most (1 - f)**{sampled} ({chances})"
    )


def prepare_report(path: Path) -> None:
    """Before the check: make the folders of ``--json`` and make sure the report can be
    written there, so that a check is never thrown away for want of a place to put it."""
    blocker = next(parent for parent in path.parents if parent.exists())  # "/" or "."
    if path.is_dir():
        problem = "it is a folder"
    elif not blocker.is_dir():
        problem = f"{blocker} is a file, not a folder"
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            writable = os.access(path if path.exists() else path.parent, os.W_OK)
            problem = None if writable else "permission denied"
        except OSError as exc:
            problem = exc.strerror or one_line(exc)
    if problem:
        raise LabkitError(f"{path}: cannot write the report ({problem})")


def run(args: argparse.Namespace) -> int:
    """Check, print the table and verdict, write the report where asked; 1 if anything failed."""
    from labkit.checks import check_all, check_one_layer, sample_test_digits
    from labkit.network import Network
    from labkit.reports import verdict
    from labkit.runs import write_gradcheck

    if args.json is not None:
        prepare_report(args.json)
    subject, name = _subject(args)
    largest = sample_test_digits()
    if isinstance(subject, Network) and args.batch > largest:
        raise LabkitError(
            f"--batch {args.batch}: the largest batch is {largest} "
            "(the bundled sample's test digits)"
        )
    options = {"fast": args.fast, "seed": args.seed, "max_elements": args.max_elements}
    if isinstance(subject, Network):
        suite = check_all(subject, oracle=args.oracle, batch=args.batch, subject=name, **options)
        what = f"{args.batch} digits"
    else:
        suite = check_one_layer(subject, oracle=args.oracle, subject=name, **options)
        what = "a random input"
    print(f"gradient check of {name}: {what}, float64, {suite.seconds:.1f} s")
    print(suite.table())
    failed = suite.failures
    print(verdict(suite.checks))
    if args.max_elements is not None and not args.fast:
        print(sampling_note(args.max_elements))

    document = suite.to_dict()
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(document, indent=2) + "\n")
        except OSError as exc:
            raise LabkitError(f"{args.json}: cannot write the report ({exc.strerror})") from None
        print(f"report written to {args.json}")
    if args.run is not None:
        try:
            stored = write_gradcheck(args.run, document)
        except OSError as exc:
            raise LabkitError(f"{args.run}: cannot store the report ({exc.strerror})") from None
        print(f"report written to {stored}")
    return 1 if failed else 0
