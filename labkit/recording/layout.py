"""The layout of a recorded run: its array names, fields and edges, spelled once.

The meeting point of the recorder (writer) and every reader, as TensorBoard's plugins
keep a ``metadata.py``: what each array holds is described in :mod:`labkit.recording`.
"""

from __future__ import annotations

import numpy as np

from labkit.network import Network, layer_key

STATS_FIELDS = ("mean", "std", "min", "max", "l2", "zero_fraction", "saturated_fraction")
KINDS = ("activation", "gradient")  # the two rows of each layer's stats and hist
ACTIVATION, GRADIENT = (KINDS.index(kind) for kind in ("activation", "gradient"))  # rows
_MAGNITUDES = 10.0 ** np.arange(-6, 2.01, 0.25)
HIST_EDGES = np.concatenate([-_MAGNITUDES[::-1], _MAGNITUDES])  # one bin spans (-1e-6, 1e-6)
PROBES = 16  # probe digits whose feature maps every record keeps

STATS = "stats"
HIST = "hist"
UPDATE_RATIO = "update_ratio"
PROBS = "probs"
PROBE_IMAGES = "probe/images"
PROBE_LABELS = "probe/labels"
SALIENCY = "backward/input"
BACKWARD_SCALE = "backward/scale"
WHOLE_RUN_TABLES = (STATS, HIST, UPDATE_RATIO)  # small per-record arrays drawn over all steps


def feature_array(key: str) -> str:
    """Name of the array of a layer's probe outputs."""
    return f"features/{key}"


def gradient_array(key: str) -> str:
    """Name of the array of the probes' gradients arriving at a layer's output."""
    return f"backward/{key}"


def encode_gradients(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(values / scale as float16, scale)`` with ``scale`` each probe's largest |value|
    (1 where all are 0): 11 significant bits relative to the probe's largest gradient."""
    flat = np.abs(values.reshape(len(values), -1)).max(axis=1, initial=0.0).astype(np.float32)
    scale = np.where(flat > 0, flat, np.float32(1))
    shape = (len(values),) + (1,) * (values.ndim - 1)
    return (values / scale.reshape(shape)).astype(np.float16), scale


def decode_gradients(stored: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The gradients :func:`encode_gradients` stored, as float32 (``scale``: one a probe)."""
    shape = (len(scale),) + (1,) * (stored.ndim - 1)
    return stored.astype(np.float32) * np.asarray(scale, np.float32).reshape(shape)


def param_array(key: str, name: str) -> str:
    """Name of the array of one parameter of a layer."""
    return f"params/{key}/{name}"


def run_layout(network: Network, probe_shape: tuple[int, ...]) -> tuple[dict, dict]:
    """The record arrays a recorded run of ``network`` holds, and the manifest entries that
    describe them (layers, statistics fields, histogram edges, update-ratio names).

    ``probe_shape`` is the probe batch's shape, ``(count, *input shape)``.
    """
    arrays: dict[str, tuple[tuple[int, ...], str]] = {}
    layers, ratio_names = [], []
    count_probes = probe_shape[0]
    shapes = network.output_shapes(tuple(probe_shape[1:]))
    for index, (layer, shape) in enumerate(zip(network.layers, shapes, strict=True)):
        key = layer_key(index, layer)
        arrays[feature_array(key)] = ((count_probes, *shape), "float16")
        for name, value in layer.params.items():
            arrays[param_array(key, name)] = (tuple(value.shape), "float32")
            ratio_names.append(f"{key}/{name}")
        layers.append(
            {
                "key": key,
                "name": layer.name,
                "class": type(layer).__name__,
                "output_shape": list(shape),
                "params": {n: list(v.shape) for n, v in layer.params.items()},
            }
        )
    # One array for the small per-layer tables: a chunk file per layer would cost a
    # 4 KB disk block each for a few hundred bytes of data.
    count = len(network.layers)
    arrays[STATS] = ((count, len(KINDS), len(STATS_FIELDS)), "float32")
    arrays[HIST] = ((count, len(KINDS), len(HIST_EDGES) - 1), "int32")
    arrays[UPDATE_RATIO] = ((len(ratio_names),), "float32")
    arrays[PROBS] = ((count_probes, int(np.prod(shape))), "float32")
    for index, (layer, shape) in enumerate(zip(network.layers, shapes, strict=True)):
        arrays[gradient_array(layer_key(index, layer))] = ((count_probes, *shape), "float16")
    arrays[SALIENCY] = (tuple(probe_shape), "float16")
    arrays[BACKWARD_SCALE] = ((count_probes, 1 + count), "float32")
    manifest = {
        "layers": layers,
        "stats_fields": list(STATS_FIELDS),
        "hist_edges": HIST_EDGES.tolist(),
        "update_ratio_names": ratio_names,
    }
    return arrays, manifest


def _sizes(value: object) -> bool:
    return isinstance(value, list) and all(type(d) is int and d >= 0 for d in value)


def _layer_problem(index: int, entry: object, arrays: dict) -> str | None:
    """What is wrong with one entry of ``"layers"`` against the record arrays, or None."""
    if not isinstance(entry, dict):
        return f"'layers' entry {index} is not an object"
    key, params = entry.get("key"), entry.get("params", {})
    if not isinstance(key, str) or feature_array(key) not in arrays:
        return f"layer {index}: key {key!r} has no recorded feature map"
    if not all(isinstance(entry.get(field, ""), str) for field in ("name", "class")):
        return f"layer {index} ({key}): 'name' and 'class' must be strings"
    if not _sizes(entry.get("output_shape", [])):
        return f"layer {index} ({key}): bad 'output_shape'"
    if not isinstance(params, dict) or not all(
        _sizes(shape) and arrays.get(param_array(key, name), {}).get("shape") == shape
        for name, shape in params.items()
    ):
        return f"layer {index} ({key}): 'params' do not match the recorded parameters"
    return None


def _backward_problem(layers: list, arrays: dict) -> str | None:
    """What is wrong with the probes' recorded gradients, or None (also when a run
    recorded before them has none)."""
    if SALIENCY not in arrays:
        return None
    for entry in layers:
        features = arrays[feature_array(entry["key"])]
        if arrays.get(gradient_array(entry["key"]), {}).get("shape") != features["shape"]:
            return f"layer {entry['key']}: its probe gradients do not fit its feature maps"
    probes = arrays[SALIENCY]["shape"][:1]
    if arrays.get(BACKWARD_SCALE, {}).get("shape") != [*probes, 1 + len(layers)]:
        return f"the {BACKWARD_SCALE!r} array does not fit the layers and probes"
    return None


def layout_problem(manifest: dict) -> str | None:
    """What is wrong with a recording's description (the manifest's ``"layers"``,
    ``"stats_fields"``, ``"hist_edges"``, ``"update_ratio_names"``) against its arrays,
    or None: every layer's arrays are there, every label list fits its array."""
    arrays = manifest["record_arrays"]  # its types are the store's, checked on opening
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        return "'layers' is missing or not a list"
    for index, entry in enumerate(layers):
        problem = _layer_problem(index, entry, arrays)
        if problem:
            return problem
    for name in (STATS, HIST, UPDATE_RATIO):
        if name not in arrays:
            return f"no {name!r} record array"
    stats, hist = arrays[STATS]["shape"], arrays[HIST]["shape"]
    if len(stats) != 3 or len(hist) != 3 or stats[:2] != [len(layers), len(KINDS)]:
        return f"'layers' ({len(layers)}) do not fit the {STATS!r} array {stats}"
    if hist[:2] != stats[:2]:
        return f"the {HIST!r} array {hist} does not fit the {STATS!r} array {stats}"
    problem = _backward_problem(layers, arrays)
    if problem:
        return problem
    ratios = arrays[UPDATE_RATIO]["shape"]
    if len(ratios) != 1:
        return f"the {UPDATE_RATIO!r} array {ratios} is not one value a parameter"
    for key, length in (
        ("stats_fields", stats[2]),
        ("hist_edges", hist[2] + 1),
        ("update_ratio_names", ratios[0]),
    ):
        values = manifest.get(key)
        if not isinstance(values, list) or len(values) != length:
            return f"{key!r} is missing or does not fit its array ({length} entries)"
    if not all(
        isinstance(v, str) for v in manifest["stats_fields"] + manifest["update_ratio_names"]
    ):
        return "'stats_fields' and 'update_ratio_names' must be strings"
    edges = manifest["hist_edges"]
    if not all(type(edge) in (int, float) for edge in edges) or not np.all(np.diff(edges) > 0):
        return "'hist_edges' are not increasing numbers"
    return None
