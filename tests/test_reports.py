"""labkit.reports: one status text for a check and for its stored JSON, the tolerance rule,
lazy positions, and the report names gradcheck still exports."""

from __future__ import annotations

import json
import warnings

import mutants as m
import numpy as np
import pytest

from labkit import reports
from labkit.gradcheck import check_layer
from labkit.layers import Activation, MaxPool, ReLU
from labkit.runs import write_gradcheck


def status_cases():
    """(id, a TensorCheck) for each kind of status: ok, kinks, a note, failures, NaN."""
    rng = np.random.default_rng(0)
    failing = check_layer(m.DenseInputScaled(4, 3, rng=0), rng.standard_normal((2, 4)))
    noted = check_layer(m.ConvMissingBiasGrad((1, 4, 4), 2, 2, rng=0))
    kinked = check_layer(ReLU(), np.array([[0.0, 1.0, 0.0]]))
    one_kink = check_layer(ReLU(), np.array([[0.0, 1.0]]))
    tie = np.zeros((1, 1, 2, 2))
    pooled = check_layer(MaxPool(2, 2), tie)
    square_root = Activation(np.sqrt, lambda x: np.zeros_like(x))
    square_root.name = "sqrt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        nan = check_layer(square_root, np.zeros((1, 3)))  # sqrt(0 - eps) is NaN
    return [
        ("ok", failing["weights"]),
        ("failures", failing["input"]),
        ("note", noted["biases"]),
        ("two-kinks", kinked["input"]),
        ("one-kink", one_kink["input"]),
        ("tie-kinks", pooled["input"]),
        ("nan", nan["input"]),
    ]


CASES = status_cases()


@pytest.mark.parametrize("check", [c for _, c in CASES], ids=[i for i, _ in CASES])
def test_the_status_of_a_check_and_of_its_json_are_the_same_text(check):
    stored = json.loads(json.dumps(check.to_dict()))  # what a run keeps: NaN becomes null
    assert reports.status_text(stored) == check.status
    assert reports.format_table([check]).splitlines()[-1].endswith(check.status)


def test_each_kind_of_status_reads_as_documented():
    status = {name: check.status for name, check in CASES}
    failing = dict(CASES)["failures"]
    assert status["ok"] == "ok"
    assert status["failures"] == (
        f"FAIL {failing.failures}/{failing.checked} "
        f"(analytic {failing.analytic:.6g}, numeric {failing.numeric:.6g} "
        f"± {failing.numeric_error:.1g} at worst)"
    )
    assert status["note"] == "FAIL: backward left grads['biases'] unset"
    assert status["two-kinks"] == "ok (2 kinks)" and status["one-kink"] == "ok (1 kink)"
    assert status["nan"].startswith("FAIL ") and "numeric nan at worst" in status["nan"]


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"failures": 0, "checked": 8, "kinks": 0, "note": ""}, "ok"),
        ({"failures": 0, "checked": 8, "kinks": 2, "note": ""}, "ok (2 kinks)"),
        ({"failures": 0, "checked": 8, "kinks": 1, "note": ""}, "ok (1 kink)"),
        (
            {"failures": 0, "checked": 0, "note": "backward returned None"},
            "FAIL: backward returned None",
        ),
        (
            {"failures": 8, "checked": 8, "analytic": -0.514514, "numeric": 0.0714746},
            "FAIL 8/8 (analytic -0.514514, numeric 0.0714746 at worst)",
        ),
        (  # the run store writes NaN and inf as null
            {"failures": 1, "checked": 3, "analytic": 0.0, "numeric": None},
            "FAIL 1/3 (analytic 0, numeric non-finite at worst)",
        ),
        (  # failures and a note: where (the counts), then why (the note)
            {"failures": 2, "checked": 4, "analytic": 1.0, "numeric": 2.0, "note": "overwrote"},
            "FAIL 2/4 (analytic 1, numeric 2 at worst); overwrote",
        ),
        ({"failures": 3}, "FAIL"),  # no worst element known
        ({}, "ok"),
    ],
)
def test_status_text_of_stored_fields(fields, status):
    assert reports.status_text(fields) == status


def test_the_status_survives_the_run_store(tmp_path):
    checks = [check for _, check in CASES]
    path = write_gradcheck(tmp_path, {"reports": [{"checks": [c.to_dict() for c in checks]}]})
    stored = json.loads(path.read_text())["reports"][0]["checks"]
    for check, entry in zip(checks, stored, strict=True):
        expected = check.status.replace("numeric nan", "numeric non-finite")  # NaN -> null
        assert reports.status_text(entry) == expected


def test_tolerance_is_atol_plus_rtol_times_the_reference():
    tolerance = reports.Tolerance(rtol=1e-3, atol=1e-6)
    assert tolerance.allowed(-2.0) == pytest.approx(1e-6 + 2e-3)
    np.testing.assert_allclose(tolerance.allowed(np.array([0.0, 10.0])), [1e-6, 1e-6 + 1e-2])
    with pytest.raises(AttributeError):
        tolerance.rtol = 0.0  # frozen


def test_summarize_takes_lazy_positions_and_names_the_worst_element():
    check = reports.TensorCheck("layer", "weights", (2, 3), "full")
    analytic = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    numeric = analytic.copy()
    numeric[4] += 0.5
    kink = np.zeros(6, dtype=bool)
    allowed = reports.Tolerance(rtol=1e-5, atol=1e-8).allowed(numeric)
    reports.summarize(check, analytic, numeric, kink, reports.FlatPositions((2, 3)), allowed)
    assert (check.checked, check.failures, check.kinks) == (6, 1, 0)
    assert check.worst_index == (1, 1)
    assert (check.analytic, check.numeric) == (5.0, 5.5)
    assert check.max_abs_error == pytest.approx(0.5)
    assert reports.FlatPositions((2, 3, 4))[23] == (1, 2, 3)


def test_gradcheck_still_exports_the_report_names():
    from labkit.gradcheck import LayerReport, NetworkReport, Report, TensorCheck, format_table

    assert (TensorCheck, Report, LayerReport, NetworkReport, format_table) == (
        reports.TensorCheck,
        reports.Report,
        reports.LayerReport,
        reports.NetworkReport,
        reports.format_table,
    )
