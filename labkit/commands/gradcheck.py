"""``labkit gradcheck``: finite-difference checks of every layer and of the whole network."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from labkit.commands.args import positive_int
from labkit.data import load_mnist, one_hot
from labkit.errors import LabkitError
from labkit.gradcheck import Report, check_layer, check_network, float64_copy, format_table
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
        "--oracle", choices=["tensorflow"], default=None, help="also compare with TensorFlow"
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


def jitter_biases(network: Network, seed: int, scale: float = 0.1) -> Network:
    """Give every bias small random values, in place.

    A fresh preset has zero biases, and MNIST's background is exactly 0, so thousands
    of pre-activations would sit exactly on the ReLU kink and max-pool windows would tie;
    the check would then mostly report kinks instead of testing the backward pass.
    """
    rng = np.random.default_rng(seed)
    for layer in network.layers:
        for name, value in layer.params.items():
            if name.startswith("bias"):
                value[...] = rng.normal(0.0, scale, value.shape)
    return network


def _network(args: argparse.Namespace) -> tuple[Network, str]:
    if args.run is None:
        network = jitter_biases(MODELS[args.model](seed=args.seed), args.seed)
        return network, f"{args.model} (fresh, seed {args.seed}, random biases)"
    weights = args.run / "weights.npz"
    if not args.run.is_dir():
        raise LabkitError(f"{args.run}: no such run folder")
    return Network.load(weights), f"run {args.run}"


def layer_inputs(network: Network, x: np.ndarray) -> list[np.ndarray]:
    """The float64 input each layer sees when ``x`` flows through ``network``."""
    inputs = []
    for layer in network.layers:
        inputs.append(np.ascontiguousarray(x))
        x = float64_copy(layer).forward(x)
    return inputs


def run_checks(
    network: Network,
    x: np.ndarray,
    y: np.ndarray,
    *,
    fast: bool = False,
    oracle: str | None = None,
    seed: int = 0,
    max_elements: int | None = None,
) -> list[Report]:
    """Every layer on its own (full or fast), then the whole network (fast), then the oracle."""
    mode = "fast" if fast else "full"
    inputs = layer_inputs(network, x)
    reports: list[Report] = []
    steps = list(zip(network.layers, inputs, strict=True))
    for layer, layer_x in tqdm(
        steps, desc="gradcheck", unit="layer", file=sys.stderr, disable=None
    ):
        reports.append(check_layer(layer, layer_x, mode=mode, seed=seed, max_elements=max_elements))
    reports.append(check_network(network, x, y, mode="fast", seed=seed))
    if oracle == "tensorflow":
        from labkit.oracle import check_layer_against_tensorflow

        for layer, layer_x in steps:
            reports.append(check_layer_against_tensorflow(layer, layer_x, seed=seed))
    return reports


def digits(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The check input: ``batch`` sample test digits with faint noise, one-hot labels.

    The noise (sigma 0.01) keeps MNIST's flat background from making max-pool windows tie.
    """
    data = load_mnist("sample")
    x = data.x_test[:batch].astype(np.float64)
    x += np.random.default_rng(seed).normal(0.0, 0.01, x.shape)
    return x, one_hot(data.y_test[:batch]).astype(np.float64)


def run(args: argparse.Namespace) -> int:
    network, subject = _network(args)
    x, y = digits(args.batch, args.seed)
    start = time.perf_counter()
    reports = run_checks(
        network,
        x,
        y,
        fast=args.fast,
        oracle=args.oracle,
        seed=args.seed,
        max_elements=args.max_elements,
    )
    seconds = time.perf_counter() - start
    checks = [check for report in reports for check in report.checks]
    failed = [check for check in checks if not check.passed]
    print(f"gradient check of {subject}: {args.batch} digits, float64, {seconds:.1f} s")
    print(format_table(checks))
    verdict = "all passed" if not failed else f"{len(failed)} FAILED"
    print(f"{len(checks)} tensors checked: {verdict}")

    document = {
        "subject": subject,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "mode": "fast" if args.fast else "full",
        "oracle": args.oracle,
        "seconds": seconds,
        "passed": not failed,
        "reports": [report.to_dict() for report in reports],
    }
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
