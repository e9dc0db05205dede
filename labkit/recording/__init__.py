"""What a recorded run holds, and its reading back by meaning: the one meeting point of
the recorder (writer) and the dashboard, its cache and ``labkit inspect`` (readers).

The run store (:mod:`labkit.runs`) keeps arrays by name and knows nothing of layers; this
module is where the names, fields and edges are spelled, once:

- ``stats``: per record, ``(layers, 2, len(STATS_FIELDS))`` float32 — statistics of each
  layer's output (row 0, ``"activation"``) and of the gradient arriving at it (row 1,
  ``"gradient"``): ``KINDS``;
- ``hist``: ``(layers, 2, len(HIST_EDGES) - 1)`` int32 counts over the sign-log bins
  ``HIST_EDGES`` (bins ``[e_i, e_i+1)``, the last one closed; outliers clip into the ends);
- ``params/<key>/<name>``: every parameter at the record (float32);
- ``update_ratio``: ``|p_after - p_before| / |p_before|`` of each parameter over the
  record's step, in the order of ``manifest["update_ratio_names"]`` (``<key>/<name>``);
- ``features/<key>``: every layer's output for the ``PROBES`` probe digits (float16);
- ``probs``: the network's class probabilities for them, ``(PROBES, classes)``;
- ``backward/<key>``: the gradient of each probe's own loss arriving at every layer's
  output, and ``backward/input`` at the input (saliency), float16 divided by each probe's
  largest magnitude, kept in ``backward/scale`` ``(PROBES, 1 + layers)`` float32 (column 0
  the input): plain float16 would flush a trained network's ~1e-7 gradients to zero.
  runs recorded by an older labkit have none (:attr:`Recording.has_backward`);
- static ``probe/images`` and ``probe/labels``.

``<key>`` is :func:`labkit.network.layer_key` (``03-Convolutional``). The manifest's
``"layers"`` lists ``{"key", "name", "class", "output_shape", "params"}`` per layer, and
``"stats_fields"``, ``"hist_edges"``, ``"update_ratio_names"``, ``"architecture"``
(:meth:`labkit.network.Network.architecture`, or null) and ``"probe_loss"`` (the loss
the probes' gradients are of) describe the rest. A recording
whose description is of the wrong types or does not fit its arrays is refused when
opened (:func:`layout_problem`, a one-line CorruptRunError), never read as wrong data.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from labkit.errors import CorruptRunError, LabkitError
from labkit.html import html_table
from labkit.network import Network
from labkit.recording.layout import (
    ACTIVATION,
    BACKWARD_SCALE,
    GRADIENT,
    HIST,
    HIST_EDGES,
    KINDS,
    PROBE_IMAGES,
    PROBE_LABELS,
    PROBES,
    PROBS,
    SALIENCY,
    STATS,
    STATS_FIELDS,
    UPDATE_RATIO,
    WHOLE_RUN_TABLES,
    decode_gradients,
    encode_gradients,
    feature_array,
    gradient_array,
    layout_problem,
    param_array,
    run_layout,
)
from labkit.reports import report_problem
from labkit.runs import Run, open_run
from labkit.runs.format import MANIFEST
from labkit.usercode import Model, network_for, with_layers

__all__ = [
    "ACTIVATION",
    "BACKWARD_SCALE",
    "GRADIENT",
    "HIST",
    "HIST_EDGES",
    "KINDS",
    "PROBE_IMAGES",
    "PROBE_LABELS",
    "PROBES",
    "PROBS",
    "SALIENCY",
    "STATS",
    "STATS_FIELDS",
    "UPDATE_RATIO",
    "WHOLE_RUN_TABLES",
    "Recording",
    "check_recorded",
    "decode_gradients",
    "encode_gradients",
    "feature_array",
    "gradient_array",
    "layout_problem",
    "open_recording",
    "param_array",
    "run_layout",
]


def check_recorded(run) -> None:
    """For a runs listing: a run whose manifest describes a recording (labkit's recorder
    wrote it) must describe it right (CorruptRunError, one line); another run of the
    store (made with :class:`labkit.runs.RunWriter` directly) is left to the store's rules."""
    if "layers" in run.manifest:
        Recording(run)


class Recording:
    """A recorded run read by meaning: layers, statistics, weights, feature maps.

    A view over a :class:`labkit.runs.Run` (``.run``); steps are training steps, and a
    method taking ``step`` wants a recorded one (:meth:`nearest_step` finds one). A run
    whose description does not fit its arrays is refused (CorruptRunError, one line).
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self._checked_id: object = None
        self._check()

    def _check(self) -> None:
        problem = layout_problem(self.run.manifest)
        if problem:
            raise CorruptRunError(f"{self.run.path / MANIFEST}: {problem}")
        self._checked_id = self.run.manifest.get("id")

    # -- the run underneath

    @property
    def path(self):
        return self.run.path

    @property
    def manifest(self) -> dict:
        return self.run.manifest

    @property
    def status(self) -> str:
        return self.run.status

    @property
    def steps(self) -> np.ndarray:
        """The recorded steps (int64, ascending)."""
        return self.run.steps

    @property
    def records(self) -> list[dict]:
        """The committed records: ``{"record", "step", "epoch", "time"}``, oldest first."""
        return self.run.records

    def __len__(self) -> int:
        return len(self.run)

    def refresh(self) -> int:
        """Pick up what a live writer added; returns how many records are visible."""
        count = self.run.refresh()
        if self.run.manifest.get("id") != self._checked_id:  # overwritten by another run
            self._check()
        return count

    def metrics(self) -> list[dict]:
        """Per-step rows (loss, accuracy, lr) and per-epoch rows (``kind: "epoch"``)."""
        return self.run.metrics()

    @property
    def gradchecks(self) -> list[dict]:
        """The gradient-check reports stored in the run, oldest first (one of the wrong
        structure is skipped, as an unreadable one is)."""
        return [report for report in self.run.gradchecks if report_problem(report) is None]

    def nearest_step(self, step: int) -> int:
        """The recorded step nearest ``step`` (the earlier on a tie)."""
        return int(self.run.steps[self.run.nearest_record(step)])

    # -- what the manifest says

    @property
    def layers(self) -> list[dict]:
        """The recorded layers: ``key``, ``name``, ``class``, ``output_shape``, ``params``."""
        layers = self.manifest.get("layers", [])
        return list(layers) if isinstance(layers, list) else []

    @property
    def convolutions(self) -> list[int]:
        """Indices of the layers with a 4-D ``kernels`` parameter (D, C, k, k)."""
        return [
            index
            for index, entry in enumerate(self.layers)
            if len(entry.get("params", {}).get("kernels", ())) == 4
        ]

    @property
    def stats_fields(self) -> list[str]:
        return list(self.manifest["stats_fields"])

    @property
    def hist_edges(self) -> np.ndarray:
        return np.asarray(self.manifest["hist_edges"])

    @property
    def update_ratio_names(self) -> list[str]:
        return list(self.manifest["update_ratio_names"])

    def layer_index(self, layer: int | str) -> int:
        """A layer's position from its index (``3`` or ``"3"``), key or name."""
        for index, entry in enumerate(self.layers):
            if layer in (index, str(index), entry.get("key"), entry.get("name")):
                return index
        names = ", ".join(entry.get("key", "?") for entry in self.layers) or "none"
        raise LabkitError(f"{self.path}: no recorded layer {layer!r} (layers: {names})")

    def key(self, layer: int | str) -> str:
        """A layer's key (``03-Convolutional``) from its index, key or name."""
        return self.layers[self.layer_index(layer)]["key"]

    # -- arrays by meaning

    def tables(self, records: slice = slice(None)) -> dict[str, np.ndarray]:
        """The small per-record arrays (``WHOLE_RUN_TABLES``) for ``records`` (default all)."""
        everything = records == slice(None)
        return {
            name: self.run.array(name) if everything else self.run.array(name, records)
            for name in WHOLE_RUN_TABLES
        }

    def layer_stats(self, layer: int | str) -> dict:
        """Every record's statistics for one layer (by index, key or name).

        ``{"steps", "activation": {field: (R,)}, "gradient": {field: (R,)},
        "hist_activation": (R, bins), "hist_gradient": (R, bins), "edges": (bins + 1,)}``
        """
        index = self.layer_index(layer)
        stats = self.run.array(STATS)[:, index]
        hist = self.run.array(HIST)[:, index]
        by_kind = {
            kind: {f: stats[:, row, i] for i, f in enumerate(self.stats_fields)}
            for row, kind in enumerate(KINDS)
        }
        return {
            "steps": self.steps,
            **by_kind,
            **{f"hist_{kind}": hist[:, row] for row, kind in enumerate(KINDS)},
            "edges": self.hist_edges,
        }

    def parameter(self, layer: int | str, name: str, step: int) -> np.ndarray:
        """One parameter of a layer at ``step``, e.g. ``parameter(0, "kernels", 100)``."""
        return self.run.array(param_array(self.key(layer), name), self.run.record_at(step))

    def kernels(self, layer: int | str, step: int) -> np.ndarray:
        """A convolution's kernels ``(D, C, k, k)`` at ``step``."""
        return self.parameter(layer, "kernels", step)

    def weights(self, step: int) -> dict[str, dict[str, np.ndarray]]:
        """Every parameter at ``step``: ``{layer key: {name: array}}``."""
        record = self.run.record_at(step)
        return {
            entry["key"]: {
                name: self.run.array(param_array(entry["key"], name), record)
                for name in entry.get("params", {})
            }
            for entry in self.layers
        }

    def feature_map(self, layer: int | str, step: int) -> np.ndarray:
        """One layer's output for the probe digits at ``step``: ``(PROBES, ...)``."""
        return self.run.array(feature_array(self.key(layer)), self.run.record_at(step))

    def feature_maps(self, step: int) -> dict[str, np.ndarray]:
        """Every layer's output for the probe digits at ``step``: ``{layer key: (16, ...)}``."""
        record = self.run.record_at(step)
        return {e["key"]: self.run.array(feature_array(e["key"]), record) for e in self.layers}

    @property
    def has_backward(self) -> bool:
        """Whether the probes' backward pass was recorded (an older labkit kept none)."""
        return SALIENCY in self.manifest["record_arrays"]

    def probe_gradients(self, step: int) -> dict[str, np.ndarray]:
        """The probes' recorded gradients at ``step`` (float32): ``"input"`` (saliency)
        and every layer's key (arriving at its output), each ``(PROBES, ...)``."""
        record = self.run.record_at(step)
        scale = self.run.array(BACKWARD_SCALE, record)
        names = {"input": SALIENCY} | {e["key"]: gradient_array(e["key"]) for e in self.layers}
        return {
            key: decode_gradients(self.run.array(name, record), scale[:, column])
            for column, (key, name) in enumerate(names.items())
        }

    def saliency(self, record: int) -> np.ndarray:
        """Every probe's input gradient at record ``record`` (float32): ``(PROBES, ...)``."""
        scale = self.run.array(BACKWARD_SCALE, record)[:, 0]
        return decode_gradients(self.run.array(SALIENCY, record), scale)

    @property
    def probe_loss(self) -> str:
        """The loss the probes' gradients are of (softmax cross-entropy before it was kept)."""
        return str(self.manifest.get("probe_loss", "softmax_cross_entropy"))

    def probabilities(self, step: int) -> np.ndarray:
        """The network's class probabilities for the probe digits at ``step``."""
        return self.run.array(PROBS, self.run.record_at(step))

    def update_ratios(self) -> tuple[list[str], np.ndarray]:
        """Parameter names and their update-to-weight ratios, one row per record."""
        return self.update_ratio_names, self.run.array(UPDATE_RATIO)

    @property
    def probe_images(self) -> np.ndarray:
        return self.run.static(PROBE_IMAGES)

    @property
    def probe_labels(self) -> np.ndarray:
        return self.run.static(PROBE_LABELS)

    @property
    def model(self) -> str | None:
        """The ``--model`` text the run was trained from (None if not recorded)."""
        model = self.manifest.get("model")
        return model if isinstance(model, str) else None

    def network_at(
        self, step: int, model: Model | None = None, layers: Iterable[type] = ()
    ) -> Network:
        """The network as it was at ``step``: built from the run's architecture (a user's
        layers need the ``model`` that made it, or their classes in ``layers``), its
        weights loaded through :meth:`Network.set_weights` (names and shapes checked)."""
        architecture = self.manifest.get("architecture")
        model = with_layers(model, layers)
        network = network_for(architecture, model, str(self.path), self.model)
        weights = {
            f"{index}.{name}": value
            for index, params in enumerate(self.weights(step).values())
            for name, value in params.items()
        }
        network.set_weights(weights, source=f"{self.path} at step {step}")
        return network

    def _repr_html_(self) -> str:
        """The run in a notebook: status, records, best test accuracy, and its layers."""
        accuracies = [
            row["test_accuracy"]
            for row in self.metrics()
            if isinstance(row.get("test_accuracy"), int | float)
        ]
        steps = self.steps
        span = f"steps {steps[0]:,}–{steps[-1]:,}" if len(steps) else "no record yet"
        best = f", best test accuracy {max(accuracies):.2%}" if accuracies else ""
        model = f", --model {self.model}" if self.model else ""
        caption = f"{self.path}: {self.status}, {len(self)} records ({span}){best}{model}"
        rows = [
            (
                entry.get("key", "?"),
                entry.get("class", "?"),
                str(tuple(entry.get("output_shape", ()))),
                ", ".join(f"{n} {tuple(shape)}" for n, shape in entry.get("params", {}).items()),
            )
            for entry in self.layers
        ]
        return html_table(("layer", "class", "output", "parameters"), rows, caption=caption)

    def __repr__(self) -> str:
        return f"Recording({str(self.path)!r}, status={self.status!r}, records={len(self)})"


def open_recording(path: str | os.PathLike) -> Recording:
    """Open a recorded run; LabkitError (one line naming the path) if it is not a good run."""
    return Recording(open_run(path))
