"""The choices and defaults the command line offers, in a module that imports nothing, so
that ``labkit --help`` is built without NumPy: the one home of each, which the library
modules that act on them import from here."""

from __future__ import annotations

MODEL_HELP = (
    "a preset (lenet, tutorial), a JSON architecture FILE.json, or your own code: "
    "FILE.py:NAME or package.module:NAME, NAME a Network or a function returning one"
)
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.01, "adam": 1e-3}  # one per optimizer (labkit.optim)
RECORD_EVERY = 100  # a recording's regular interval in steps (labkit.recorder.RecordSchedule)
SPLITS = ("processes", "threads")  # what a split step's slices run on (labkit.parallel)
ORACLES = ("tensorflow",)  # what a check may also compare with (labkit.checks)
