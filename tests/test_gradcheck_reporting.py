"""How the checker reports what it found: sampling guarantees, the dtype rows everywhere a
report is shown, one-line errors from a user's code inside a whole-network check."""

from __future__ import annotations

import re
from pathlib import Path

import mutants_power as mp
import numpy as np
import pytest

from dashboards.figures import tables
from labkit.cli import main
from labkit.differences import miss_chance
from labkit.gradcheck import GradcheckError, check_layer, check_network
from labkit.layers import Dense, ReLU
from labkit.network import Network
from labkit.reports import verdict


def test_a_sample_misses_a_fault_at_most_as_often_as_independent_draws_would():
    assert miss_chance(500, 0.01) == pytest.approx(0.99**500)
    assert miss_chance(500, 0.01) < 0.007 < miss_chance(400, 0.01)
    assert miss_chance(10, 1.0) == 0.0 and miss_chance(10, 0.0) == 1.0
    # the exact chance for a small tensor (hypergeometric) is below the bound
    n, k, m = 20, 2, 5  # 2 faulty elements of 20, 5 drawn
    exact = (18 / 20) * (17 / 19) * (16 / 18) * (15 / 17) * (14 / 16)
    assert exact <= miss_chance(m, k / n)


def test_the_cli_says_what_a_sample_guarantees(capsys):
    small = Path(__file__).resolve().parents[1] / "examples" / "small_net.json"
    assert main(["gradcheck", "--model", str(small), "--max-elements", "50"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"escapes with probability at most \(1 - f\)\*\*50 \(1%: 0\.61,", out)


def test_the_float32_rows_show_their_dtype_in_the_table_and_the_dashboard():
    report = check_layer(mp.DenseFloat16Input(6, 4, dtype=np.float32, rng=0))
    low = report["input@float32"]
    assert (low.dtype, low.against, low.passed) == ("float32", "float64", False)
    assert "float32 vs float64" in report.table()
    assert low.status.startswith("FAIL ") and "(float32 " in low.status and "float64 " in low.status
    rows = tables.gradcheck_table(report.to_dict())
    assert [row["mode"] for row in rows if row["tensor"] == "input"] == [
        "full",
        "float32 vs float64",
    ]
    assert verdict(report.checks) == "3 tensors checked: 1 FAILED"  # one tensor, two rows


def test_a_float64_layer_gets_no_dtype_rows():
    report = check_layer(Dense(4, 3, dtype=np.float64, rng=0))
    assert {c.dtype for c in report.checks} == {"float64"}


def test_a_users_layer_raising_inside_a_network_check_is_one_line_with_its_line():
    network = Network([Dense(4, 3, rng=0), ReLU(), mp.DenseTypoInBackward(3, 2, rng=0)])
    x, y = np.ones((2, 4)), np.eye(2)
    with pytest.raises(GradcheckError) as caught:
        check_network(network, x, y)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("network: backward raised KeyError")
    assert re.search(r"mutants_power\.py:\d+\)$", message)
