"""labkit.memory: a step's freed arrays are reused, not faulted in afresh every step.

Each check runs in a fresh interpreter: malloc's settings are process-wide and permanent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from labkit.memory import OPT_OUT

FAULTS_PER_STEP = """
import json, resource
import numpy as np
from labkit.losses import softmax_cross_entropy_prime
from labkit.models import lenet
from labkit.optim import Adam
from labkit.parallel import DataParallel
import labkit.memory

rng = np.random.default_rng(0)
x = rng.random((64, 1, 28, 28), dtype=np.float32)
y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 64)]
network = lenet()
runner, optimizer = DataParallel(network, threads=1), Adam(network)
def step():
    runner.forward_backward(x, lambda out: softmax_cross_entropy_prime(y, out))
    optimizer.step()
for _ in range(10):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20
print(json.dumps({"applied": labkit.memory.keep_freed_memory(), "faults": faults}))
"""


def run_steps(opt_out: str | None) -> dict:
    env = {key: value for key, value in os.environ.items() if key != OPT_OUT}
    if opt_out is not None:
        env[OPT_OUT] = opt_out
    env["OPENBLAS_NUM_THREADS"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", FAULTS_PER_STEP], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_a_training_step_reuses_the_memory_the_last_one_freed():
    # measured: 0-9 faults a step with the settings; without, 60-1,800 in most processes
    # (and ~0 in some, where glibc's own threshold adjusting held: page_faults.py)
    figures = run_steps(None)
    assert figures["applied"]
    assert figures["faults"] < 30, figures


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_the_settings_can_be_turned_off():
    figures = run_steps("0")
    assert not figures["applied"]
