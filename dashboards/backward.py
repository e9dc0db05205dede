"""The backward view's panels: one layer's backward pass for the chosen probe at the
step (:func:`labkit.explain.explain_at`), the chain-rule sum of a clicked element, its
finite-difference check, and the probe's saliency over training. Plain functions of the
cached runs, as :mod:`dashboards.panels`; :mod:`dashboards.backward_callbacks` wires them.

The view is opened by choosing its layer: until then it costs a step move nothing. What
it shows is keyed by ``at`` (``{"run", "step", "probe", "layer"}``, the page's cursor,
made in the browser, assets/view.js ``backwardCursor``), and the probe's pass at a step
is computed once and kept (:func:`explained_at`) for the click and the verify button.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from dash import Patch, html

from dashboards import figures
from dashboards.figures.backward import (
    drawn_rows,
    element_at,
    part_figure,
    part_values,
    saliency_figure,
)
from dashboards.store import CachedRun
from labkit import explain
from labkit.backprop import SHOWN_TERMS, SYMBOLS, ChainRule
from labkit.errors import LabkitError
from labkit.usercode import Model

HEIGHTS = (290, 480)  # px of the view's figures: most layers, and one with a tall mosaic
TALL = 120  # mosaic rows from which a figure is drawn tall (32 x 16 kernels: 191)
SLOTS = 8  # figures of the view: a convolution has the most parts (X, K, Y, dY, rot K, dX, dK, dB)
KEPT = 16  # layers' backward passes kept per server process (a click, verify: no recompute)

_kept: OrderedDict[tuple, explain.Explained] = OrderedDict()
_kept_lock = threading.Lock()


def layer_options(cached: CachedRun) -> list[dict]:
    """The backward view's layer picker: every layer by key, then the loss at the end."""
    run = cached.run
    name = run.probe_loss.replace("_", " ").replace(
        "softmax cross entropy", "softmax cross-entropy"
    )
    layers = [{"label": entry["key"], "value": i} for i, entry in enumerate(run.layers)]
    return [*layers, {"label": f"loss ({name})", "value": explain.LOSS}]


def position_of(cached: CachedRun, layer: object) -> int:
    """The position of the picker's ``layer`` (an index, or ``"loss"`` after the last);
    LabkitError for anything else (a request may send anything)."""
    count = len(cached.run.layers)
    if layer == explain.LOSS:
        return count
    if isinstance(layer, int) and not isinstance(layer, bool) and 0 <= layer < count:
        return layer
    raise LabkitError(f"no layer {layer!r} in this run")


def cursor(cached: CachedRun, at: dict) -> tuple[int, int, int]:
    """``(step, probe, position)`` for the cursor ``at``: the recorded step nearest its
    step, its probe clipped to the run's, its layer's position."""
    if len(cached.run) == 0:
        raise LabkitError("no completed record yet")
    step = at.get("step")
    step = step if isinstance(step, int) and not isinstance(step, bool) else 0
    probe = at.get("probe")
    probe = probe if isinstance(probe, int) and not isinstance(probe, bool) else 0
    probe = int(np.clip(probe, 0, len(cached.run.probe_labels) - 1))
    return cached.run.nearest_step(step), probe, position_of(cached, at.get("layer"))


def explained_at(
    cached: CachedRun, step: int, probe: int, position: int, model: Model | None = None
) -> explain.Explained:
    """The layer at ``position``'s backward pass for ``probe`` at ``step`` (a recorded
    one), computed once per server process for the :data:`KEPT` latest asked."""
    run = cached.run
    key = (str(run.path), run.manifest.get("id"), step, probe, position)
    with _kept_lock:
        if key in _kept:
            _kept.move_to_end(key)
            return _kept[key]
        passes = [e.probe_pass for k, e in _kept.items() if k[:4] == key[:4]]
    passed = passes[0] if passes else explain.probe_pass(run, step, probe, model)
    explained = explain.explain_at(passed, position)
    with _kept_lock:
        _kept[key] = explained
        while len(_kept) > KEPT:
            _kept.popitem(last=False)
    return explained


def symbol(part: str) -> str:
    return SYMBOLS.get(part, part)


def element_name(part: str, index) -> str:
    return f"{symbol(part)}[{','.join(str(int(i)) for i in index)}]"


def valid_element(explained: explain.Explained, element: object) -> tuple[str, tuple] | None:
    """``(part, index)`` of a chosen element (``{"layer", "part", "index"}``) if it is
    one of this layer's parts, else None (a request may send anything)."""
    if not isinstance(element, dict) or not isinstance(element.get("index"), list):
        return None
    part, index = element.get("part"), element["index"]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in index):
        return None
    try:
        return part, explain.element_index(explained, part, index)
    except LabkitError:
        return None


def default_choice(explained: explain.Explained) -> tuple[str, tuple] | None:
    """The element shown before any click: the largest |value| of the gradient the layer
    sends down (dX; dz for the loss), the one most worth explaining."""
    part = explained.gradient_part
    if part not in explained.backward.parts:
        return None
    return part, explain.default_element(explained, part)


@dataclass
class BackwardView:
    """What the view shows for one cursor: a figure per slot, the parts they show, the
    header, the formula-vs-recorded line, the chosen element and its chain rule."""

    figures: list = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    title: str = ""
    agreement: str = ""
    choice: tuple[str, tuple] | None = None
    rule: list = field(default_factory=list)
    verifiable: bool = False
    height: int = HEIGHTS[0]
    patched: bool = False  # the figures are Patches of the drawn ones' values


def value_patch(values: np.ndarray, signed: bool) -> Patch:
    """A part's figure at another step as a Patch: its first trace's values, typed arrays."""
    patch = Patch()
    for key, value in part_values(values, signed).items():
        if value is not None:
            patch["data"][0][key] = figures.typed(value)
    return patch


def backward_view(
    cached: CachedRun,
    at: dict,
    element: object = None,
    model: Model | None = None,
    drawn: object = None,
) -> BackwardView:
    """The view at ``at``, ``element`` chosen if it is one of the layer's (else the
    default); a run recorded without the probes' gradients is one line (LabkitError).
    Where the page ``drawn`` this layer for this probe (at another step), its figures are
    Patches of their values (:func:`value_patch`): building them whole costs ~4 ms each."""
    step, probe, position = cursor(cached, at)
    explained = explained_at(cached, step, probe, position, model)
    choice = valid_element(explained, element) or default_choice(explained)
    parts = list(explained.backward.parts)[:SLOTS]
    moved = isinstance(drawn, dict) and drawn.get("parts") == parts
    moved = moved and all(drawn.get(key) == at.get(key) for key in ("run", "layer"))
    moved = moved and drawn.get("probe") == probe
    shown = []
    for key in parts:
        part = explained.backward.parts[key]
        marked = choice[1] if choice and choice[0] == key else None
        if moved:
            shown.append(value_patch(part.values, part.signed))
            continue
        shown.append(
            part_figure(
                part.values,
                part.title,
                part.formula,
                symbol=symbol(key),
                signed=part.signed,
                marked=marked,
            )
        )
    rows = max(drawn_rows(explained.backward.parts[key].values.shape) for key in parts)
    label = int(cached.run.probe_labels[probe])
    kind = explained.backward.kind
    what = "the loss" if explained.layer == explain.LOSS else f"{explained.layer} ({kind})"
    title = f"{what}: probe {probe} (digit {label}) at step {step:,}"
    return BackwardView(
        figures=shown,
        patched=moved,
        parts=parts,
        title=title,
        agreement=agreement_line(explained),
        choice=choice,
        rule=rule_panel(explained, *choice) if choice else [],
        verifiable=bool(choice) and explain.verifiable(explained, choice[0]),
        height=HEIGHTS[rows >= TALL],
    )


def agreement_line(explained: explain.Explained) -> str:
    """The layer's formula for the gradient it sends down against what the recorder kept."""
    agreement = explained.agreement
    name = symbol(explained.gradient_part)
    if agreement is None:
        return f"no formula here for this layer: its {name} is its own backward, as recorded"
    verdict = "they agree" if explained.formula_agrees else "they DIFFER"
    source = "p − y" if explained.layer == explain.LOSS else "the formula, from the recorded dY"
    return (
        f"{name} by {source}, against {name} as recorded (float16): largest difference "
        f"{agreement:.1e} of the largest |{name}|; {verdict}"
    )


def rule_panel(explained: explain.Explained, part: str, index: tuple) -> list:
    """The chain-rule sum behind ``part[index]`` as the panel lists it, or why there is
    none (an input or output of the layer, a mask)."""
    values = explained.backward.parts[part]
    value = float(values.values[index])
    name = element_name(part, index)
    if part not in explained.backward.rules and part != "dy":
        return [
            html.Div(f"{name} = {value:+.6e}", style={"fontWeight": "bold"}),
            html.Div(
                f"{values.title}: no sum to show here. Click a gradient "
                "(dY, dX, a parameter's d…) for the chain rule that makes it.",
                style={"color": "#7f8ea3"},
            ),
        ]
    rule = explain.chain_rule(explained, part, index)
    recorded = " (the gradient recorded at the layer's output, float16)" if part == "dy" else ""
    return [
        html.Div(f"{rule.element} = {rule.formula}", style={"fontWeight": "bold"}),
        terms_table(rule),
        html.Div(
            f"the clicked {name} = {value:+.6e}{recorded}",
            id="backward-clicked",
            style={"marginTop": "4px"},
        ),
    ]


def terms_table(rule: ChainRule, shown: int = SHOWN_TERMS) -> html.Table:
    """The sum's largest terms (value, product, factors), the rest in one row, the total."""
    cell = {"padding": "1px 8px", "fontFamily": "monospace", "whiteSpace": "nowrap"}
    right = {**cell, "textAlign": "right"}
    grey = {**cell, "color": "#7f8ea3"}
    rows = []
    for term in rule.terms[:shown]:
        factors = " × ".join(f"{f + 0.0:+.4g}" for f in term.factors)  # + 0.0: no "-0"
        rows.append(
            html.Tr(
                [
                    html.Td(f"{term.value + 0.0:+.6e}", style=right),
                    html.Td(term.label, style=cell),
                    html.Td(f"= {factors}", style=grey),
                ]
            )
        )
    rest = rule.terms[shown:]
    if rest:
        summed = sum(t.value for t in rest)
        text = f"= the {len(rest)} smaller terms together"
        rows.append(html.Tr([html.Td(f"{summed:+.6e}", style=right), html.Td(text, style=grey)]))
    total = {**right, "fontWeight": "bold", "borderTop": "1px solid #2a3f5f"}
    rows.append(
        html.Tr(
            [
                html.Td(f"{rule.total:+.6e}", style=total, id="backward-total"),
                html.Td(
                    f"= {rule.element}, the sum of {len(rule.terms)} "
                    + ("term" if len(rule.terms) == 1 else "terms"),
                    style={**cell, "fontWeight": "bold", "borderTop": "1px solid #2a3f5f"},
                ),
            ]
        )
    )
    return html.Table(html.Tbody(rows), style={"borderCollapse": "collapse", "fontSize": "12px"})


def verify_panel(cached: CachedRun, drawn: dict, element: object, model: Model | None) -> list:
    """The finite-difference check of the chosen element, taken now from the weights
    recorded at the drawn step (float64), as the panel shows it."""
    step, probe, position = cursor(cached, drawn)
    explained = explained_at(cached, step, probe, position, model)
    choice = valid_element(explained, element)
    if choice is None or not explain.verifiable(explained, choice[0]):
        return ["pick a gradient element first (dY, dX, dz or a parameter's d…)"]
    checked = explain.verify(explained, *choice)
    cell = {"padding": "1px 8px", "fontFamily": "monospace", "whiteSpace": "nowrap"}
    rows = [("shown (from the recorded float16)", f"{checked.shown:+.6e}")]
    if checked.on_kink:  # the difference crosses a ReLU's 0 or a max-pool's tie: no verdict
        verdict, colour = "on a kink (a ReLU at 0 or a max-pool tie): not judged", "#7f5a00"
    else:
        error = checked.check.numeric_error
        rows = [
            ("analytic (float64 backward)", f"{checked.analytic:+.9e}"),
            ("finite difference", f"{checked.numeric:+.9e}" + (f" ± {error:.1e}" if error else "")),
            ("relative error", f"{checked.relative_error:.1e}"),
            *rows,
        ]
        verdict = "agrees" if checked.agrees else "DISAGREES"
        colour = figures.RIGHT_COLOR if checked.agrees else figures.WRONG_COLOR
    return [
        html.Div(
            [html.B(element_name(*choice)), ": ", html.B(verdict, style={"color": colour})],
            id="backward-verdict",
        ),
        html.Table(
            html.Tbody(
                [html.Tr([html.Td(a, style=cell), html.Td(b, style=cell)]) for a, b in rows]
            ),
            style={"fontSize": "12px"},
        ),
    ]


def click_choice(
    cached: CachedRun, drawn: dict, slot: int, click: object, model: Model | None
) -> tuple[explain.Explained, tuple[str, tuple] | None]:
    """The layer drawn (``drawn``, the cursor of the figures on the page) and the element
    a click on figure ``slot`` chose (None: a gap, a tile's head, another trace)."""
    step, probe, position = cursor(cached, drawn)
    explained = explained_at(cached, step, probe, position, model)
    parts = list(explained.backward.parts)[:SLOTS]
    points = click.get("points") if isinstance(click, dict) else None
    if not (0 <= slot < len(parts)) or not isinstance(points, list) or not points:
        return explained, None
    point = points[0] if isinstance(points[0], dict) else {}
    x, y = point.get("x"), point.get("y", 0)
    if point.get("curveNumber") != 0 or not isinstance(x, int | float):
        return explained, None
    part = parts[slot]
    shape = explained.backward.parts[part].values.shape
    y = y if isinstance(y, int | float) and len(shape) > 1 else 0
    index = element_at(shape, x, y)
    return explained, None if index is None else (part, index)


def saliency_panel(cached: CachedRun, at: dict):
    """The probe's input gradient at ~12 records over the run, the cursor's step framed."""
    run = cached.run
    if not run.has_backward:
        return figures.empty_figure("recorded without the probes' gradients: no saliency")
    step, probe, _ = cursor(cached, {**at, "layer": explain.LOSS})
    steps, maps = explain.saliency_strip(run, probe, step)
    label = int(run.probe_labels[probe])
    title = (
        f"saliency over training: probe {probe} (digit {label})'s input gradient dL/dX at "
        f"{len(steps)} records, each scaled to its own largest |value|"
    )
    return saliency_figure(steps, maps, step, title)
