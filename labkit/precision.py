"""The check in the layer's own dtype: its float32 gradient against its float64 one.

The finite differences run in float64, so a bug that lives only on the float32 path (a
float16 intermediate, a cast that truncates) would pass them. Here the layer runs once
more in its own dtype, on the float32-rounded input, parameters and output gradient, and
each gradient is compared with the float64 gradient at exactly those rounded values. An
element fails when ``|g32 - g64| > LOW_RTOL * (|g64| + rms(g64)) + 64 eps32 max|R * y|``:
2**-16 is about 500 float32 rounding units, far above float32's own rounding of a sum and
well below float16's (2**-11 per value); the last term allows the cancellation an honest
float32 backward may suffer (``g - sum(y g)`` in a saturated softmax).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np

from labkit.reports import FlatPositions, TensorCheck, summarize

LOW_RTOL = 2.0**-16
LOW_FLOOR = 64  # rounding units of the largest |R * output| an honest gradient may lose


def own_dtype(layer, x: np.ndarray | None) -> np.dtype | None:
    """The dtype the layer is used in, when it isn't float64: its parameters' float dtype;
    for a layer without parameters, a low-precision input's dtype, else float32 (what
    labkit trains in: checks hand every layer float64 inputs)."""
    dtypes = [
        value.dtype
        for value in (getattr(layer, "params", None) or {}).values()
        if np.issubdtype(getattr(value, "dtype", np.dtype(object)), np.floating)
    ]
    given = None if x is None else np.asarray(x).dtype
    if dtypes:
        dtype = dtypes[0]
    elif given is not None and np.issubdtype(given, np.floating) and given != np.float64:
        dtype = given
    else:
        dtype = np.dtype(np.float32)
    return None if dtype == np.float64 else np.dtype(dtype)


def cast_copy(layer, dtype):
    """Deep copy of ``layer`` with every float array it holds (parameters, gradient
    buffers it allocated, other attributes) in ``dtype``; arrays that alias each other
    (tutorial-style ``self.weights`` beside ``params["weights"]``) still do."""
    work = copy.deepcopy(layer)
    converted: dict[int, np.ndarray] = {}

    def cast(value):
        if not (isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating)):
            return value
        if id(value) not in converted:
            converted[id(value)] = np.array(value, dtype=dtype, order="C")
        return converted[id(value)]

    for attr, value in list(vars(work).items()):
        if isinstance(value, dict) and attr in ("params", "grads"):
            for key, item in list(value.items()):
                value[key] = cast(item)
        else:
            setattr(work, attr, cast(value))
    return work


def _run(layer, call: Callable, x: np.ndarray, projection: np.ndarray, dtype) -> tuple:
    """Forward and backward of a copy of ``layer`` in ``dtype``: (input grad, grads, params)."""
    work = cast_copy(layer, dtype)
    output = np.asarray(call("forward", work.forward, x.astype(dtype)), dtype=np.float64)
    grad_x = call("backward", work.backward, projection.astype(dtype))
    grads = {key: np.array(v, copy=True) for key, v in (getattr(work, "grads", None) or {}).items()}
    return grad_x, grads, getattr(work, "params", None) or {}, output


def check_own_dtype(
    layer, name: str, call: Callable, x: np.ndarray, projection: np.ndarray, dtype
) -> list[TensorCheck]:
    """One check per tensor (input, then each parameter) of the layer's ``dtype`` gradient
    against float64 at the same rounded values; a tensor whose gradient is missing or
    malformed in either is left to the float64 check."""
    low_x = x.astype(dtype)
    low_r = projection.astype(dtype)
    low = _run(layer, call, low_x, low_r, dtype)
    # float64 from the same rounded values (parameters in ``dtype`` convert exactly)
    high = _run(layer, call, low_x.astype(np.float64), low_r.astype(np.float64), np.float64)
    # what backward's intermediates are made of: an honest float32 gradient may lose its
    # rounding unit of the largest R * output to a cancellation (a saturated softmax does)
    floor = LOW_FLOOR * np.finfo(dtype).eps * float(np.max(np.abs(low_r * high[3])))
    pairs = [("input", low[0], high[0], x.shape)]
    pairs += [(key, low[1].get(key), high[1].get(key), np.shape(v)) for key, v in low[2].items()]
    checks = []
    for tensor, ours, reference, shape in pairs:
        if ours is None or reference is None or np.shape(ours) != np.shape(reference):
            continue
        ours = np.asarray(ours, dtype=np.float64).reshape(-1)
        reference = np.asarray(reference, dtype=np.float64).reshape(-1)
        if not (np.all(np.isfinite(reference)) and ours.size):
            continue
        rms = float(np.sqrt(np.mean(np.square(reference))))
        check = TensorCheck(name, tensor, tuple(shape), "vs float64")
        check.dtype, check.against = np.dtype(dtype).name, "float64"
        summarize(
            check,
            ours,
            reference,
            np.zeros(ours.size, dtype=bool),
            FlatPositions(tuple(shape)),
            LOW_RTOL * (np.abs(reference) + rms) + floor,
        )
        checks.append(check)
    return checks
