"""``labkit explain``: one layer's backward pass for one probe digit at one recorded step,
from the formulas (:mod:`labkit.explain`), with the chain-rule sum behind one element and
that element checked by finite differences; figures with matplotlib (imported when the
command runs, not by its parser)."""

from __future__ import annotations

import argparse
from pathlib import Path

from labkit.commands.args import add_figure_arguments, add_model_argument, add_step_argument
from labkit.errors import LabkitError

GRADIENT_PARTS = ("dx", "dy", "dz", "dkernels", "dbiases", "dweights", "dbias")
# Below this loss a float64 finite difference hardly resolves the probe's gradients: a
# trained network's sure probe (p = 1 - 1e-12) has gradients of ~1e-12
TINY_LOSS = 1e-4


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "explain", help="show a layer's backward pass for a probe digit, one element checked"
    )
    parser.add_argument("run", type=Path, help="a run folder written by labkit train")
    parser.add_argument(
        "--layer",
        required=True,
        help="the layer, by index (3), key (03-Convolutional) or name; or loss (the loss "
        "at the end)",
    )
    parser.add_argument("--probe", type=int, default=0, help="which probe digit, 0-15")
    add_step_argument(parser, "used")
    parser.add_argument(
        "--part",
        default=None,
        help=f"the gradient whose element is explained: {', '.join(GRADIENT_PARTS)}, as the "
        "layer has (default: the one it sends down, dx; dz for the loss)",
    )
    parser.add_argument(
        "--element",
        default=None,
        metavar="I,J,K",
        help="the element of --part, comma-separated (default: its largest |value|)",
    )
    add_figure_arguments(parser, "RUN/figures/explain")
    add_model_argument(
        parser,
        default=None,
        what="; needed only for a network of your own layers (default: the run's "
        "recorded architecture)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from labkit import explain as ex
    from labkit.recording import open_recording
    from labkit.usercode import load_model

    recorded = open_recording(args.run)
    model = load_model(args.model) if args.model is not None else None
    if not len(recorded):
        raise LabkitError(f"{args.run}: the run has no completed record yet")
    first, last = int(recorded.steps[0]), int(recorded.steps[-1])
    step = last if args.step is None else args.step
    if not first <= step <= last:
        raise LabkitError(
            f"--step {step}: outside the run ({args.run} recorded steps {first} to {last})"
        )
    try:
        position = ex.layer_position(recorded, args.layer)
    except LabkitError as exc:
        raise LabkitError(f"--layer: {exc}; or {ex.LOSS}, the loss at the end") from None
    explained = ex.explain_at(ex.probe_pass(recorded, step, args.probe, model), position)
    part = _part(explained, args.part)
    values = explained.backward.parts[part].values
    if args.element is None:
        index = ex.default_element(explained, part)
    else:
        index = ex.parse_element(args.element)
    verification = ex.verify(explained, part, index)  # refuses an element outside the part
    try:
        rule = ex.chain_rule(explained, part, index)
    except LabkitError as exc:  # a layer or loss with no formula here: no sum to show
        rule, no_rule = None, str(exc)
    out = args.out or args.run / "figures" / "explain"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabkitError(f"{out}: cannot create the folder ({exc.strerror})") from None
    used = explained.probe_pass.step
    if args.step is None:
        which = " (the last record)"
    else:
        which = f" (no record at step {step}: the nearest)" if used != step else ""
    print("\n".join(_header(recorded, explained, ex.LOSS, which)), end="\n\n")
    print("\n".join(_parts(explained)), end="\n\n")
    print(_agreement(explained), end="\n\n")
    how = " (its largest |value|; --element to choose another)" if args.element is None else ""
    print(f"{_element_name(part, index)} = {float(values[index]):+.6e}{how}")
    if rule is None:
        print(f"no chain-rule sum: {no_rule}")
    else:
        if part == "dy":
            above = rule.element.split("[")[0]
            print(
                f"dy is the {above} the layer above sent down; its sum, from that layer's own "
                "recorded dY (so equal to dy within float16's ~1e-3):"
            )
        print("\n".join(rule.lines()))
    print(f"check: {verification.line()}")
    note = _tiny_loss_note(explained, verification)
    if note:
        print(note)
    print()
    for path in _figures(recorded, explained, part, index, rule, out, args.format):
        print(path)
    return 0


def _tiny_loss_note(explained, verification) -> str | None:
    """What to say under a doubtful verdict on a probe the network is all but sure of."""
    loss = explained.probe_pass.own_loss
    doubtful = verification.on_kink or not verification.agrees
    if loss >= TINY_LOSS or not (doubtful or explained.formula_agrees is False):
        return None
    return (
        f"note: probe {explained.probe_pass.probe}'s loss is only {loss:.1e} here, and its "
        "gradients as small: near what training's float32 (the recorded values) and a "
        "float64 finite difference resolve, so a DIFFERS or a kink here may be rounding's, "
        "not the backward's; a probe the network is less sure of tests it better"
    )


def _part(explained, part: str | None) -> str:
    """The part asked for, or the layer's gradient going down; one line if it has none."""
    if part is None:
        return explained.gradient_part
    parts = explained.backward.parts
    gradients = [key for key in parts if key.startswith("d")]
    if part not in gradients:
        raise LabkitError(
            f"--part {part!r}: {explained.layer} has no such gradient (its gradients: "
            f"{', '.join(gradients)})"
        )
    return part


def _element_name(part: str, index) -> str:
    return f"{part}[{','.join(str(int(i)) for i in index)}]"


def _header(recorded, explained, loss: str, which: str) -> list[str]:
    """The run, step, probe and its label, and the layer and its kind."""
    passed = explained.probe_pass
    if explained.layer == loss:
        layer = f"layer loss: {recorded.probe_loss}, at the end (after {passed.keys[-1]})"
    else:
        entry = recorded.layers[explained.index]
        shape = "×".join(map(str, entry.get("output_shape", ())))
        layer = (
            f"layer {explained.layer} ({entry.get('class', '?')}: {explained.backward.kind}), "
            f"output {shape}"
        )
    p = float(recorded.probabilities(passed.step)[passed.probe][passed.label])
    return [
        f"run {recorded.path}, step {passed.step}{which}",
        f"probe {passed.probe}: digit {passed.label} (p = {p:.6f}); the gradients are of its "
        f"own {recorded.probe_loss} loss, {passed.own_loss:.3e}",
        layer,
    ]


def _parts(explained) -> list[str]:
    """Each part's key, title, shape, range and formula, one line each."""
    rows = []
    for part in explained.backward.parts.values():
        shape = "×".join(map(str, part.values.shape))
        span = f"[{part.values.min():+.3e}, {part.values.max():+.3e}]"
        formula = f"  {part.formula}" if part.formula else ""
        rows.append(f"  {part.key:<9} {part.title:<36} {shape:<11} {span}{formula}")
    return ["parts:", *rows]


def _agreement(explained) -> str:
    """The formula's gradient against the one the layer's own backward gave when recorded."""
    agreement = explained.agreement
    part = explained.gradient_part
    if agreement is None:
        return f"formula vs recorded: no formula here for {explained.layer}; {part} is its own"
    verdict = "agrees" if explained.formula_agrees else "DIFFERS"
    return (
        f"formula vs recorded: {part} from the formula differs from the one recorded in "
        f"training by at most {agreement:.1e} of its largest |value| (float16 keeps ~1e-3): "
        f"{verdict}"
    )


def _figures(recorded, explained, part, index, rule, out: Path, fmt: str) -> list[Path]:
    """The layer's backward figure, the chain-rule figure and the saliency strip, saved."""
    from labkit.explain import LOSS, saliency_strip
    from labkit.explain_figures import backward_figure, chain_rule_figure, saliency_figure

    passed = explained.probe_pass
    tail = f"step{passed.step}-probe{passed.probe}.{fmt}"
    about = f"{recorded.path.name}, step {passed.step}, probe {passed.probe} (digit {passed.label})"
    chosen = _element_name(part, index)
    written = []
    kind = recorded.probe_loss if explained.layer == LOSS else explained.backward.kind
    title = f"{explained.layer} ({kind}) backward: {about}; □ {chosen}"
    figure = backward_figure(explained.backward, title, part, index)
    written.append(_save(figure, out / f"backward-{explained.layer}-{tail}"))
    if rule is not None:
        figure = chain_rule_figure(rule, f"{explained.layer}: {chosen}, {about}")
        name = f"chain-{explained.layer}-{part}-{'-'.join(map(str, index))}-{tail}"
        written.append(_save(figure, out / name))
    steps, maps = saliency_strip(recorded, passed.probe, passed.step)
    image = recorded.probe_images[passed.probe]
    title = f"saliency: the input gradient of probe {passed.probe}'s loss, {recorded.path.name}"
    figure = saliency_figure(steps, maps, passed.step, title, image, passed.label)
    written.append(_save(figure, out / f"saliency-{tail}"))
    return written


def _save(figure, path: Path) -> Path:
    try:
        figure.savefig(path, dpi=110)
    except OSError as exc:
        raise LabkitError(f"{path}: cannot write the figure ({exc.strerror})") from None
    return path
