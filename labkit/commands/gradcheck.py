"""``labkit gradcheck``: finite-difference checks of every layer and of the whole network."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from labkit.checks import ORACLES, check_all, jitter_biases
from labkit.commands.args import positive_int
from labkit.errors import LabkitError
from labkit.models import MODELS
from labkit.network import Network
from labkit.runs import write_gradcheck


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "gradcheck", help="check every layer's backward pass against finite differences"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", choices=sorted(MODELS), default="lenet")
    source.add_argument(
        "--run", type=Path, default=None, help="check the weights saved in this run folder"
    )
    parser.add_argument(
        "--fast", action="store_true", help="directional checks instead of every element"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    parser.add_argument(
        "--oracle", choices=ORACLES, default=None, help="also compare with TensorFlow"
    )
    parser.add_argument(
        "--max-elements",
        type=positive_int,
        default=None,
        help="full mode: check at most N random elements per tensor (default: all)",
    )
    parser.add_argument("--batch", type=positive_int, default=2, help="digits per check")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(handler=run)


def _network(args: argparse.Namespace) -> tuple[Network, str]:
    """The network to check (a fresh preset with random biases, or a run's weights) and
    how the report names it."""
    if args.run is None:
        network = jitter_biases(MODELS[args.model](seed=args.seed), args.seed)
        return network, f"{args.model} (fresh, seed {args.seed}, random biases)"
    weights = args.run / "weights.npz"
    if not args.run.is_dir():
        raise LabkitError(f"{args.run}: no such run folder")
    return Network.load(weights), f"run {args.run}"


def run(args: argparse.Namespace) -> int:
    """Check, print the table and verdict, write the report where asked; 1 if anything failed."""
    network, subject = _network(args)
    suite = check_all(
        network,
        fast=args.fast,
        oracle=args.oracle,
        seed=args.seed,
        max_elements=args.max_elements,
        batch=args.batch,
        subject=subject,
    )
    print(f"gradient check of {subject}: {args.batch} digits, float64, {suite.seconds:.1f} s")
    print(suite.table())
    failed = suite.failures
    verdict = "all passed" if not failed else f"{len(failed)} FAILED"
    print(f"{len(suite.checks)} tensors checked: {verdict}")

    document = suite.to_dict()
    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
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
