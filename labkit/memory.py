"""Keep the memory a step frees for the next step, instead of handing it back to the OS.

A lenet step allocates and frees the same few large arrays every time (im2col columns,
feature maps, their gradients: 0.2 to 8 MB each at batch 16 to 128). glibc's malloc
serves arrays that large with fresh ``mmap`` pages and returns them on ``free``, or trims
them off the heap's top, so most steps touch new pages: 60 to 1,800 page faults a
one-thread lenet step in most processes (0 in a few, where glibc's own adjusting of the
thresholds held), 3-10% of the step at batch 16 to 128 (``benchmarks/page_faults.py``).
Raising malloc's mmap and trim thresholds makes those arrays come from the heap and stay
there: after the first steps a step faults in almost no pages. The price is that the
process keeps up to ``TRIM_THRESHOLD`` of freed memory for reuse.

The settings are process-wide and permanent (glibc has no "undo"), so labkit applies them
only when it is asked to run steps: a :class:`labkit.parallel.DataParallel` (every
training step and ``Network.predict``) calls :func:`keep_freed_memory` once. Worker
processes forked afterwards inherit them. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed: arrays up to this come from the heap
TRIM_THRESHOLD = 256 * 1024 * 1024  # free memory the heap may keep on top before it trims
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
OPT_OUT = "LABKIT_KEEP_FREED_MEMORY"  # set to 0 to leave malloc's settings alone

_applied: bool | None = None  # None: not tried yet; else whether glibc took the settings


def keep_freed_memory() -> bool:
    """Raise glibc malloc's mmap and trim thresholds (once per process); whether they hold."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if os.environ.get(OPT_OUT, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success (setting either one turns off glibc's own adjusting)
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    )
