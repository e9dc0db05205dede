"""Measure the smallest gradient error each gradient checker catches: labkit's
check_layer, JAX's check_grads and torch's gradcheck, in float64 with their defaults.

    python benchmarks/bench_sensitivity.py [--scale S] [--checkers labkit,jax,torch] [--json PATH]

A checker passing a layer is only worth as much as the errors it would have caught. Each
"wrong" layer here is the correct backward of a Convolutional, Dense or Tanh layer with
a relative error delta put into one tensor's gradient: ``element`` multiplies one fixed
element (the largest |gradient| for a fixed random output gradient) by 1 + delta,
``tensor`` multiplies the whole tensor's gradient. For delta = 1e-1, 1e-2, ..., 1e-10
each checker is run on each wrong layer, and the table gives the smallest delta flagged
(flagged at every larger delta too), or "—" for none. The correct layer (delta = 0) is
checked too: a flag there is a false alarm.

labkit's checker is whatever ``labkit.gradcheck.check_layer`` is imported, with its
defaults; JAX and torch check the same function, written in the framework with a
hand-written backward (``jax.custom_vjp``, ``torch.autograd.Function``) that returns the
framework's own correct gradient with the same error put in. Their forwards are held
equal to labkit's (1e-12) before anything is measured. ``--scale S`` multiplies the
inputs (standard normal draws) by S.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import labkit
from labkit.gradcheck import check_layer
from labkit.layers import Convolutional, Dense, Tanh

DELTAS = tuple(10.0**-k for k in range(1, 11))  # 1e-1 ... 1e-10
FAULTS = ("element", "tensor")
CHECKERS = ("labkit", "jax", "torch")
INPUT_SEED, BIAS_SEED, COTANGENT_SEED = 0, 1, 2
VANISHING = 1e-30  # a gradient this small (tanh saturated at --scale 1e4) is noted


@dataclass(frozen=True)
class Kind:
    """One layer under check: how to build it (from a class, so mutants build alike)."""

    name: str
    build: Callable[[type], object]
    layer_class: type
    input_shape: tuple[int, ...]


KINDS = (
    Kind(
        "conv",
        lambda cls: cls((2, 6, 6), 3, 3, dtype=np.float64, rng=0),
        Convolutional,
        (2, 2, 6, 6),
    ),
    Kind("dense", lambda cls: cls(8, 5, dtype=np.float64, rng=0), Dense, (3, 8)),
    Kind("tanh", lambda cls: cls(), Tanh, (2, 3, 4, 4)),
)


@dataclass
class Case:
    """A kind's fixed values: the input, the parameters and each tensor's fixed element."""

    kind: Kind
    x: np.ndarray
    params: dict[str, np.ndarray]
    elements: dict[str, tuple[int, ...]]
    largest: dict[str, float]  # |gradient| at that element, for the fixed output gradient

    @property
    def tensors(self) -> tuple[str, ...]:
        return ("input", *self.params)

    @property
    def args(self) -> tuple[np.ndarray, ...]:
        """The framework functions' arguments: ``(x, *params)`` in labkit's order."""
        return (self.x, *self.params.values())


def make_layer(case: Case, cls: type | None = None):
    """The kind's layer (or its subclass ``cls``) holding the case's parameters."""
    layer = case.kind.build(cls or case.kind.layer_class)
    for name, value in case.params.items():
        layer.params[name] = value.copy()
    return layer


def reference_gradients(case: Case) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """labkit's output, a fixed random output gradient and the gradients it gives."""
    layer = make_layer(case)
    output = layer.forward(case.x.copy())
    cotangent = np.random.default_rng(COTANGENT_SEED).standard_normal(output.shape)
    grad_x = layer.backward(cotangent.copy())
    return output, cotangent, {"input": grad_x, **{k: layer.grads[k] for k in case.params}}


def make_case(kind: Kind, scale: float) -> Case:
    """Inputs ``scale * N(0, 1)``; biases drawn too (labkit's are 0), so that the forward
    agreement also checks their layout; each tensor's element is its largest |gradient|."""
    x = scale * np.random.default_rng(INPUT_SEED).standard_normal(kind.input_shape)
    layer = kind.build(kind.layer_class)
    rng = np.random.default_rng(BIAS_SEED)
    params = {
        name: rng.standard_normal(value.shape) * 0.1 if "bias" in name else value.copy()
        for name, value in layer.params.items()
    }
    case = Case(kind, x, params, {}, {})
    _, _, grads = reference_gradients(case)
    for name, grad in grads.items():
        index = np.unravel_index(np.argmax(np.abs(grad)), grad.shape)
        case.elements[name] = tuple(int(i) for i in index)
        case.largest[name] = float(np.abs(grad[index]))
    return case


def multiplier(case: Case, tensor: str, fault: str, delta: float) -> np.ndarray:
    """What the correct gradient of ``tensor`` is multiplied by in the wrong backward."""
    shape = case.params[tensor].shape if tensor != "input" else case.x.shape
    factor = np.ones(shape)
    if fault == "element":
        factor[case.elements[tensor]] = 1 + delta
    else:
        factor[...] = 1 + delta
    return factor


# -- labkit --------------------------------------------------------------------------


def labkit_mutant(base: type, tensor: str, factor: np.ndarray) -> type:
    """A subclass of ``base`` whose backward puts the error into ``tensor``'s gradient
    and then applies SGD itself, so an update would use the wrong gradient."""

    class Wrong(base):
        def backward(self, output_gradient, learning_rate=None):
            grad_x = super().backward(output_gradient, None)
            if tensor == "input":
                grad_x = grad_x * factor  # a new array: the layer's own is left alone
            else:
                self.grads[tensor] = self.grads[tensor] * factor
            self.sgd_update(learning_rate)
            return grad_x

    Wrong.__name__ = Wrong.__qualname__ = f"Wrong{base.__name__}"
    return Wrong


def labkit_flagged(case: Case, tensor: str, factor: np.ndarray) -> bool:
    """Whether ``check_layer``, with its defaults, fails ``tensor`` of the wrong layer."""
    layer = make_layer(case, labkit_mutant(case.kind.layer_class, tensor, factor))
    return not check_layer(layer, case.x.copy())[tensor].passed


def kink_notes(cases: list[Case]) -> list[str]:
    """Where labkit's checker passed an element as a kink (no single derivative): every
    layer here is smooth, so each one is noise, and a wrong element can hide as one."""
    notes = []
    for case in cases:
        for tensor in case.tensors:
            counts = []
            for delta in (0.0, DELTAS[0]):
                factor = multiplier(case, tensor, "element", delta)
                layer = make_layer(case, labkit_mutant(case.kind.layer_class, tensor, factor))
                counts.append(getattr(check_layer(layer, case.x.copy())[tensor], "kinks", 0))
            if any(counts):
                notes.append(
                    f"labkit {case.kind.name} {tensor}: {counts[0]} kinks on the correct layer, "
                    f"{counts[1]} with element {case.elements[tensor]} off by {DELTAS[0]:.0e}"
                )
    return notes


# -- JAX -----------------------------------------------------------------------------


def jax_forwards() -> dict[str, Callable]:
    """Each kind's forward in jax.numpy (labkit's layouts, float64)."""
    import jax
    import jax.numpy as jnp

    def conv(x, kernels, biases):
        dims = ("NCHW", "OIHW", "NCHW")
        out = jax.lax.conv_general_dilated(x, kernels, (1, 1), "VALID", dimension_numbers=dims)
        return out + biases  # untied: one bias per output position, (depth, oh, ow)

    return {"conv": conv, "dense": lambda x, w, b: x @ w.T + b, "tanh": jnp.tanh}


def jax_wrong(forward: Callable, position: int, factor: np.ndarray) -> Callable:
    """``forward`` with a custom VJP: jax.vjp's gradient, argument ``position`` scaled."""
    import jax

    @jax.custom_vjp
    def f(*args):
        return forward(*args)

    def f_fwd(*args):
        return forward(*args), args

    def f_bwd(args, g):
        grads = list(jax.vjp(forward, *args)[1](g))
        grads[position] = grads[position] * factor
        return tuple(grads)

    f.defvjp(f_fwd, f_bwd)
    return f


def jax_flagged(case: Case, tensor: str, factor: np.ndarray) -> bool:
    """Whether ``check_grads(order=1, modes=("rev",))``, defaults, raises AssertionError."""
    from jax.test_util import check_grads

    f = jax_wrong(jax_forwards()[case.kind.name], case.tensors.index(tensor), factor)
    try:
        check_grads(f, case.args, order=1, modes=("rev",))
    except AssertionError:
        return True
    return False


def jax_gradients(case: Case, cotangent: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The JAX forward's output and its VJP for ``cotangent``."""
    import jax

    output, vjp = jax.vjp(jax_forwards()[case.kind.name], *case.args)
    return np.asarray(output), [np.asarray(g) for g in vjp(cotangent)]


# -- torch ---------------------------------------------------------------------------


def torch_forwards() -> dict[str, Callable]:
    """Each kind's forward in torch (``conv2d`` is a cross-correlation, as labkit's)."""
    import torch
    import torch.nn.functional as F

    def conv(x, kernels, biases):
        return F.conv2d(x, kernels) + biases

    return {"conv": conv, "dense": lambda x, w, b: x @ w.T + b, "tanh": torch.tanh}


def torch_wrong(forward: Callable, position: int, factor: np.ndarray) -> Callable:
    """``forward`` as an autograd.Function whose backward is autograd's own gradient
    with argument ``position``'s scaled."""
    import torch

    scale = torch.from_numpy(factor)

    class Wrong(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *args):
            ctx.save_for_backward(*args)
            return forward(*args)

        @staticmethod
        def backward(ctx, g):
            args = [t.detach().requires_grad_() for t in ctx.saved_tensors]
            with torch.enable_grad():
                grads = list(torch.autograd.grad(forward(*args), args, g))
            grads[position] = grads[position] * scale
            return tuple(grads)

    return Wrong.apply


def torch_inputs(case: Case) -> tuple:
    import torch

    return tuple(torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in case.args)


def torch_flagged(case: Case, tensor: str, factor: np.ndarray) -> bool:
    """Whether ``gradcheck(raise_exception=False)``, defaults, returns False."""
    import torch

    f = torch_wrong(torch_forwards()[case.kind.name], case.tensors.index(tensor), factor)
    return not torch.autograd.gradcheck(f, torch_inputs(case), raise_exception=False)


def torch_gradients(case: Case, cotangent: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The torch forward's output and its gradients for ``cotangent``."""
    import torch

    inputs = torch_inputs(case)
    output = torch_forwards()[case.kind.name](*inputs)
    grads = torch.autograd.grad(output, inputs, torch.from_numpy(cotangent))
    return output.detach().numpy(), [g.numpy() for g in grads]


# -- the run -------------------------------------------------------------------------

FLAGGED = {"labkit": labkit_flagged, "jax": jax_flagged, "torch": torch_flagged}
GRADIENTS = {"jax": jax_gradients, "torch": torch_gradients}


def available(checkers: list[str]) -> tuple[list[str], list[str]]:
    """The checkers that can run, and a one-line note for each that can't."""
    ready, notes = [], []
    for name in checkers:
        if name == "labkit":
            ready.append(name)
            continue
        try:
            if name == "jax":
                import jax

                jax.config.update("jax_enable_x64", True)
                import jax.test_util  # noqa: F401
            else:
                import torch

                torch.set_num_threads(1)  # thousands of tiny ops: threads only cost here
        except Exception as exc:  # an import may fail in many ways: the column goes
            notes.append(f"{name}: skipped, not importable ({type(exc).__name__}: {exc})")
            continue
        ready.append(name)
    return ready, notes


def verify_agreement(case: Case, checker: str) -> None:
    """Assert the framework's forward is labkit's (1e-12) and its gradients too (1e-10)."""
    output, cotangent, grads = reference_gradients(case)
    their_output, their_grads = GRADIENTS[checker](case, cotangent)
    size = max(1.0, float(np.abs(output).max()))
    np.testing.assert_allclose(
        their_output,
        output,
        rtol=0,
        atol=1e-12 * size,
        err_msg=f"{checker} {case.kind.name} forward",
    )
    for name, theirs in zip(case.tensors, their_grads, strict=True):
        ours = grads[name]
        atol = 1e-10 * max(1.0, float(np.abs(ours).max()))
        np.testing.assert_allclose(
            theirs, ours, rtol=0, atol=atol, err_msg=f"{checker} {case.kind.name} {name} gradient"
        )


def threshold(flags: list[bool]) -> float | None:
    """The smallest delta flagged with every larger delta flagged too (flags go with
    DELTAS, largest first); None when the largest isn't flagged."""
    found = None
    for delta, flagged in zip(DELTAS, flags, strict=True):
        if not flagged:
            break
        found = delta
    return found


def run_checker(checker: str, cases: list[Case]) -> dict:
    """Every wrong layer (and the correct one) through one checker: flags per row."""
    flagged = FLAGGED[checker]
    rows, false_alarms = {}, []
    for case in cases:
        start = time.perf_counter()
        for tensor in case.tensors:
            if flagged(case, tensor, multiplier(case, tensor, "tensor", 0.0)):
                false_alarms.append(f"{case.kind.name} {tensor}")
            for fault in FAULTS:
                flags = [flagged(case, tensor, multiplier(case, tensor, fault, d)) for d in DELTAS]
                rows[f"{case.kind.name} {tensor} {fault}"] = flags
        seconds = time.perf_counter() - start
        print(f"  {checker} {case.kind.name}: {seconds:.1f} s", file=sys.stderr, flush=True)
    checks = sum(len(case.tensors) for case in cases)
    return {"rows": rows, "false_alarms": false_alarms, "correct_checks": checks}


def cell(flags: list[bool]) -> str:
    """``1e-06``, or ``—``; a ``*`` when some smaller delta below an unflagged one was
    flagged as well (the checker is not monotone there)."""
    found = threshold(flags)
    text = "—" if found is None else f"{found:.0e}"
    last = DELTAS.index(found) + 1 if found is not None else 0
    return text + "*" * any(flags[last:])


def versions(checkers: list[str]) -> str:
    """numpy, labkit (where it was imported from, and its git commit) and the frameworks."""
    source = Path(labkit.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "not a git checkout"
    parts = [
        f"python {platform.python_version()}",
        f"numpy {np.__version__}",
        f"labkit {source} ({commit})",
    ]
    for name in ("jax", "torch"):
        if name in checkers:
            parts.append(f"{name} {sys.modules[name].__version__}")
    return ", ".join(parts)


def print_table(results: dict, checkers: list[str], cases: list[Case], scale: float) -> None:
    print(f"Smallest relative gradient error δ flagged (float64, defaults, scale {scale:g}):")
    print("on 1e-01 ... 1e-10, flagged there and at every larger δ; — none flagged")
    print()
    print("| wrong gradient | " + " | ".join(checkers) + " |")
    print("|---" * (len(checkers) + 1) + "|")
    for row in results[checkers[0]]["rows"]:
        print(f"| {row} | " + " | ".join(cell(results[c]["rows"][row]) for c in checkers) + " |")
    print()
    alarms = []
    for c in checkers:
        found, total = results[c]["false_alarms"], results[c]["correct_checks"]
        alarms.append(f"{c} {len(found)}/{total}" + (f" ({', '.join(found)})" if found else ""))
    print("False alarms at δ = 0 (the correct layer flagged): " + ", ".join(alarms))
    if any("*" in cell(flags) for r in results.values() for flags in r["rows"].values()):
        print("* also flagged at some δ below one it passed (see --json for every flag)")
    for case in cases:
        for tensor, largest in case.largest.items():
            if largest < VANISHING:
                print(
                    f"{case.kind.name} {tensor}: its largest |gradient| is {largest:.1e} at "
                    f"scale {scale:g}, so an error relative to it is below anything float64 sees"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="inputs are scale * N(0, 1)")
    parser.add_argument("--checkers", default=",".join(CHECKERS))
    parser.add_argument("--json", type=Path, help="write every flag and the setup here")
    args = parser.parse_args()
    asked = [name.strip() for name in args.checkers.split(",") if name.strip()]
    unknown = sorted(set(asked) - set(CHECKERS))
    if unknown or not asked:
        parser.error(f"--checkers takes a list from {','.join(CHECKERS)}, got {args.checkers!r}")
    checkers, notes = available(asked)
    for note in notes:
        print(note)
    if not checkers:
        return
    started = time.perf_counter()
    cases = [make_case(kind, args.scale) for kind in KINDS]
    for checker in checkers:
        if checker in GRADIENTS:
            for case in cases:
                verify_agreement(case, checker)
    results = {checker: run_checker(checker, cases) for checker in checkers}
    kinks = kink_notes(cases) if "labkit" in checkers else []
    seconds = time.perf_counter() - started
    print_table(results, checkers, cases, args.scale)
    for note in kinks:
        print(note)
    print(f"{versions(checkers)}; {seconds:.0f} s")
    print(f"$ {shlex.join(['python', *sys.argv])}")
    if args.json:
        document = {
            "command": shlex.join(["python", *sys.argv]),
            "scale": args.scale,
            "deltas": list(DELTAS),
            "versions": versions(checkers),
            "skipped": notes,
            "kinks": kinks,
            "seconds": seconds,
            "elements": {
                c.kind.name: {
                    t: {"index": c.elements[t], "gradient": c.largest[t]} for t in c.tensors
                }
                for c in cases
            },
            "results": {
                c: {**r, "smallest": {row: threshold(f) for row, f in r["rows"].items()}}
                for c, r in results.items()
            },
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
