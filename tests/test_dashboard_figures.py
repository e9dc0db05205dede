"""The dashboard's pure figure functions: each on small synthetic arrays, then every panel
of one step of a small real run (trained here) and of a synthetic 2,000-record run.
Their speed is measured in benchmarks/bench_dashboard.py, not asserted here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from figure_checks import underscored_keys, validated

from dashboards import figures as F
from labkit.gradcheck import check_layer
from labkit.layers import Dense, ReLU
from labkit.recording import HIST_EDGES, STATS_FIELDS

BINS = len(HIST_EDGES) - 1


def step_rows(n: int, first: int = 1) -> list[dict]:
    return [
        {"step": s, "epoch": 1, "loss": 1.0 / s, "accuracy": s / (n + first), "lr": 1e-3}
        for s in range(first, first + n)
    ]


def epoch_row(step: int, epoch: int, test_accuracy: float) -> dict:
    return {"kind": "epoch", "step": step, "epoch": epoch, "test_accuracy": test_accuracy}


def shape_lines(fig: go.Figure) -> list:
    return [shape for shape in fig.layout.shapes if shape.type == "line"]


# ---------------------------------------------------------------------- training curves


def test_training_curves_plots_every_row_and_marks_the_step():
    rows = step_rows(5) + [epoch_row(5, 1, 0.9)] + step_rows(3, first=6)
    fig = F.training_curves(rows, current_step=4)
    loss, batch, test = fig.data
    assert [type(trace) for trace in fig.data] == [go.Scatter] * 3
    np.testing.assert_array_equal(loss.x, np.arange(1, 9))
    np.testing.assert_allclose(loss.y, 1.0 / np.arange(1, 9), rtol=1e-6)
    np.testing.assert_allclose(batch.y, [r["accuracy"] for r in rows if "loss" in r], rtol=1e-6)
    np.testing.assert_array_equal(test.x, [5])
    np.testing.assert_array_equal(test.y, [0.9])
    assert (batch.xaxis, batch.yaxis, test.yaxis) == ("x2", "y2", "y2")
    assert fig.layout.yaxis.type == "log"
    [marker] = shape_lines(fig)
    assert marker.x0 == marker.x1 == 4
    assert (marker.yref, marker.y0, marker.y1) == ("paper", 0, 1)  # spans both plots
    assert fig.layout.xaxis.matches == "x2"


def test_training_curves_thin_by_striding_and_keep_first_and_last_step():
    rows = step_rows(10_001)
    loss = F.training_curves(rows, None).data[0]
    x = np.asarray(loss.x)
    assert len(x) <= F.MAX_POINTS + 1
    assert len(x) > F.MAX_POINTS // 2
    assert x[0] == 1 and x[-1] == 10_001
    assert len(set(np.diff(x[:-1]))) == 1  # a regular stride before the appended last step
    np.testing.assert_allclose(loss.y, 1.0 / x, rtol=1e-6)  # each kept point keeps its own value


def test_training_curves_without_a_step_have_no_marker_and_null_loss_is_a_gap():
    rows = step_rows(3)
    rows[1]["loss"] = None  # non-finite values are stored as null
    fig = F.training_curves(rows, None)
    assert shape_lines(fig) == []
    assert math.isnan(fig.data[0].y[1])


def test_training_curves_without_rows_say_so():
    fig = F.training_curves([epoch_row(10, 1, 0.5)], 3)
    assert fig.data == ()
    assert "no training metrics" in fig.layout.annotations[0].text


# ---------------------------------------------------------------------- histograms


def test_histogram_at_step_bars_over_readable_sign_log_bins():
    counts = np.arange(BINS, dtype=np.int32)
    fig = F.histogram_at_step(counts, HIST_EDGES, "3:Convolutional gradient")
    [bar] = fig.data
    assert isinstance(bar, go.Bar)
    np.testing.assert_array_equal(bar.y, counts)
    assert len(set(bar.x)) == BINS  # one distinct category per bin
    assert bar.x[0] == "< -56" and bar.x[-1] == "≥ 56"
    assert bar.x[BINS // 2] == "[-1e-6, 1e-6)"
    assert bar.x[BINS // 2 + 17] == "[1e-2, 1.8e-2)"
    ticks = dict(zip(fig.layout.xaxis.ticktext, fig.layout.xaxis.tickvals, strict=True))
    # the tick "1e-2" sits on the edge between the bins either side of 0.01
    assert ticks["1e-2"] == np.flatnonzero(np.isclose(HIST_EDGES, 1e-2))[0] - 0.5
    assert ticks["-1e-2"] == np.flatnonzero(np.isclose(HIST_EDGES, -1e-2))[0] - 0.5
    assert ticks["0"] == BINS // 2
    assert {"-1e2", "-1", "1", "1e2", "1e-4"} <= set(ticks)
    assert fig.layout.title.text == "3:Convolutional gradient"
    with pytest.raises(ValueError, match="edges"):
        F.histogram_at_step(counts[:-1], HIST_EDGES, "")


def test_histogram_over_time_is_a_log_count_heatmap_with_the_step_marked():
    rng = np.random.default_rng(0)
    steps = np.array([1, 2, 5, 10, 50])
    counts = rng.integers(0, 500, size=(len(steps), BINS)).astype(np.int32)
    fig = F.histogram_over_time(steps, counts, HIST_EDGES, current_step=5)
    [heatmap] = fig.data
    assert isinstance(heatmap, go.Heatmap)
    np.testing.assert_array_equal(heatmap.x, steps)
    assert np.shape(heatmap.z) == (BINS, len(steps))
    np.testing.assert_allclose(heatmap.z, np.log1p(counts.T), rtol=1e-6)
    np.testing.assert_array_equal(heatmap.customdata, counts.T)  # raw counts on hover
    assert heatmap.y[0] == "< -56" and len(heatmap.y) == BINS
    [marker] = shape_lines(fig)
    assert marker.x0 == 5
    assert marker.line.color == marker.label.font.color != F.MARKER_COLOR  # light on dark
    assert F.histogram_over_time(steps[:0], counts[:0], HIST_EDGES, None).data == ()


# ---------------------------------------------------------------------- gradient flow


def test_gradient_flow_lines_on_a_log_axis_with_bands_and_marker():
    steps = np.array([1, 2, 3, 10])
    values = np.array([[1e-3, 2.0], [1e-4, 0.0], [1e-5, 3.0], [1e-6, -1.0]])
    fig = F.gradient_flow(steps, ["0:Conv", "7:Dense"], values, 3, "gradient norm")
    assert [trace.name for trace in fig.data] == ["0:Conv", "7:Dense"]
    np.testing.assert_array_equal(fig.data[0].x, steps)
    np.testing.assert_allclose(fig.data[0].y, values[:, 0], rtol=1e-6)
    second = np.asarray(fig.data[1].y, dtype=float)
    np.testing.assert_array_equal(second[[0, 2]], [2.0, 3.0])
    assert np.isnan(second[[1, 3]]).all()  # 0 and negatives cannot sit on a log axis
    assert fig.layout.yaxis.type == "log"
    bottom, top = fig.layout.yaxis.range
    assert bottom <= math.log10(1e-7) - 0.5 and top >= math.log10(1e2) + 0.5
    vanishing, exploding = (s for s in fig.layout.shapes if s.type == "rect")
    assert vanishing.y1 == 1e-7 and vanishing.y0 <= 10**bottom * 1.0001
    assert exploding.y0 == 1e2 and exploding.y1 >= 10**top * 0.9999
    assert "vanishing" in vanishing.label.text and "exploding" in exploding.label.text
    [marker] = shape_lines(fig)
    assert marker.x0 == 3


def test_gradient_flow_range_follows_data_beyond_the_thresholds():
    steps = np.arange(3)
    values = np.array([[1e-12], [1.0], [1e6]])
    fig = F.gradient_flow(
        steps, ["w"], values, None, "update ratio", thresholds=F.UPDATE_RATIO_THRESHOLDS
    )
    assert fig.layout.yaxis.range == (-12.5, 6.5)
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert [rects[0].y1, rects[1].y0] == [1e-4, 1e-2]  # about 1e-3 is healthy
    assert "1e-4" in rects[0].label.text
    assert shape_lines(fig) == []
    with pytest.raises(ValueError):
        F.gradient_flow(steps, ["a", "b"], values, None)


# ---------------------------------------------------------------------- health warnings


def stats_for(**columns: list[float]) -> dict[str, np.ndarray]:
    """{"activation": (L, F), "gradient": (L, F)} with the named columns filled in."""
    count = len(next(iter(columns.values())))
    activation = np.full((count, len(STATS_FIELDS)), 0.1)
    activation[:, STATS_FIELDS.index("saturated_fraction")] = np.nan
    gradient = np.full((count, len(STATS_FIELDS)), 0.1)
    for name, values in columns.items():
        kind, field = name.split("__")
        table = activation if kind == "activation" else gradient
        table[:, STATS_FIELDS.index(field)] = values
    return {"activation": activation, "gradient": gradient}


def test_health_warnings_read_well():
    names = ["1:Sigmoid", "3:ReLU", "7:Dense"]
    stats = stats_for(
        activation__zero_fraction=[0.0, 0.92, 0.95],  # 95% zeros in a Dense: not a ReLU
        activation__saturated_fraction=[0.45, np.nan, np.nan],
        gradient__l2=[0.1, 0.1, 3e-9],
    )
    warnings = F.health_warnings(names, stats, ["Sigmoid", "ReLU", "Dense"])
    assert warnings == [
        "1:Sigmoid: 45% saturated",
        "3:ReLU: 92% of outputs are exactly 0 (dying ReLUs?)",
        "7:Dense: gradient norm 3e-9 (vanishing)",
    ]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])  # the run stores float32
@pytest.mark.parametrize(
    ("column", "threshold", "direction", "message"),
    [
        ("activation__zero_fraction", F.DEAD_FRACTION, 1, "exactly 0"),
        ("activation__saturated_fraction", F.SATURATED_FRACTION, 1, "saturated"),
        ("gradient__l2", F.GRADIENT_NORM_THRESHOLDS[0], -1, "(vanishing)"),
        ("gradient__l2", F.GRADIENT_NORM_THRESHOLDS[1], 1, "(exploding)"),
    ],
)
def test_health_warnings_fire_just_beyond_their_threshold(
    dtype, column, threshold, direction, message
):
    def warnings(value) -> list[str]:
        stats = {k: v.astype(dtype) for k, v in stats_for(**{column: [value]}).items()}
        return F.health_warnings(["3:ReLU"], stats, ["ReLU"])

    at = dtype(threshold)
    assert warnings(at) == []
    assert warnings(at - direction * at * dtype(0.01)) == []  # 1% inside
    [warning] = warnings(np.nextafter(at, dtype(direction * np.inf)))  # one ulp beyond
    assert warning.startswith("3:ReLU: ") and message in warning


def test_health_warnings_flag_non_finite_values():
    stats = stats_for(activation__l2=[np.inf], gradient__l2=[np.nan])
    warnings = F.health_warnings(["0:Dense"], stats, ["Dense"])
    assert warnings == [
        "0:Dense: activation norm inf (non-finite)",
        "0:Dense: gradient norm nan (non-finite)",
    ]
    assert F.health_warnings(["0:Dense"], stats_for(gradient__l2=[0.5]), ["Dense"]) == []


def test_update_ratio_warnings_need_a_sustained_trend_after_the_first_steps():
    names = ["big/w", "small/w", "fine/w", "once/w", "big/biases"]
    total, n = 100, F.SUSTAINED_RECORDS
    ratios = np.full((40, 5), 1e-3)
    ratios[:, 4] = 0.5  # a bias: drawn, never flagged (it starts at 0)
    ratios[0, 4] = np.nan
    ratios[:, 0] = 0.5  # too large all along
    ratios[:, 1] = 1e-6  # too small all along
    ratios[:6, 2] = 0.5  # Adam's first steps, then healthy
    ratios[-3, 3] = 0.5  # one odd record is no trend
    warnings = F.update_ratio_warnings(names, ratios, total)
    assert warnings == [
        f"big/w: update ratio 0.5, above 1e-2 for the last {n} records (learning rate too high?)",
        f"small/w: update ratio 1e-6, below 1e-4 for the last {n} records (learning rate too low?)",
    ]
    # Early in the run, however large: the first 5% of the records are no trend.
    early = int(F.SETTLING_FRACTION * total) + n - 1
    assert F.update_ratio_warnings(names, ratios[:early], total) == []
    assert len(F.update_ratio_warnings(names, ratios[: early + 1], total)) == 2
    broken = ratios[:3].copy()
    broken[-1, 2] = np.inf  # non-finite: at once
    assert F.update_ratio_warnings(names, broken, total) == [
        "fine/w: update ratio inf (non-finite)"
    ]
    with pytest.raises(ValueError):
        F.update_ratio_warnings(names[:2], ratios, total)


# ---------------------------------------------------------------------- kernels, maps


def test_kernel_grid_puts_every_kernel_in_its_row_and_column():
    rng = np.random.default_rng(1)
    kernels = rng.normal(size=(3, 2, 4, 4)).astype(np.float32)
    fig = F.kernel_grid(kernels, "3:Convolutional kernels")
    [heatmap] = fig.data
    assert isinstance(heatmap, go.Heatmap)
    z = np.asarray(heatmap.z, dtype=float)
    custom = np.asarray(heatmap.customdata)
    assert z.shape == (3 * 5 - 1, 2 * 5 - 1)
    for d in range(3):
        for c in range(2):
            np.testing.assert_array_equal(z[d * 5 : d * 5 + 4, c * 5 : c * 5 + 4], kernels[d, c])
            assert (custom[d * 5 : d * 5 + 4, c * 5 : c * 5 + 4] == [d, c]).all()
    assert np.isnan(z[4::5, :]).all() and np.isnan(z[:, 4::5]).all()  # the gaps
    assert np.isfinite(z).sum() == kernels.size
    bound = np.abs(kernels).max()
    assert (heatmap.zmin, heatmap.zmax, heatmap.zmid) == (-bound, bound, 0)
    assert fig.layout.yaxis.range[0] > fig.layout.yaxis.range[1]  # kernel 0 on top
    assert list(fig.layout.yaxis.ticktext) == ["0", "1", "2"]  # every output channel k
    assert list(fig.layout.yaxis.tickvals) == [1.5, 6.5, 11.5]  # at its row's centre
    assert list(fig.layout.xaxis.ticktext) == ["0", "1"]  # every input channel c
    assert (fig.layout.yaxis.title.text, fig.layout.xaxis.title.text) == (
        "output channel k",
        "input channel c",
    )


def test_kernel_grid_wraps_one_input_channel_into_a_square():
    kernels = np.arange(5 * 2 * 2, dtype=np.float32).reshape(5, 1, 2, 2) + 1
    fig = F.kernel_grid(kernels, "0:Convolutional")
    z = np.asarray(fig.data[0].z, dtype=float)
    heads = fig.data[1]  # each kernel's k just above it
    assert (heads.mode, heads.textposition, heads.hoverinfo) == ("text", "top center", "skip")
    assert list(zip(heads.text, heads.x, heads.y, strict=True)) == [
        (str(d), d % 3 * 3 + 0.5, d // 3 * 3 - 0.5) for d in range(5)
    ]
    assert fig.layout.yaxis.range[1] < -0.5  # room for the first row's heads
    assert z.shape == (2 * 3 - 1, 3 * 3 - 1)  # 5 kernels in 3 columns, 2 rows
    for d in range(5):
        row, column = divmod(d, 3)
        np.testing.assert_array_equal(
            z[row * 3 : row * 3 + 2, column * 3 : column * 3 + 2], kernels[d, 0]
        )
    assert np.isnan(z[3:, 6:]).all()  # the sixth slot is empty


def test_kernel_grid_change_since_step0_and_other_inputs():
    zero = F.kernel_grid(np.zeros((2, 1, 3, 3)), "change since step 0").data[0]
    assert (zero.zmin, zero.zmax) == (-1.0, 1.0)  # no change: still a valid scale
    sequential = F.kernel_grid(np.ones((2, 2, 3, 3)), "|w|", diverging=False).data[0]
    assert sequential.zmid is None and sequential.colorscale != zero.colorscale
    matrix = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(F.kernel_grid(matrix, "7:Dense weights").data[0].z, matrix)
    with pytest.raises(ValueError):
        F.kernel_grid(np.zeros((2, 3, 3)), "bad")


def test_feature_map_grid_mosaic_and_bars():
    maps = (np.arange(5 * 3 * 3).reshape(5, 3, 3) / 7).astype(np.float16)
    [heatmap] = F.feature_map_grid(maps, "probe 0, 2:MaxPool").data
    z = np.asarray(heatmap.z, dtype=float)
    assert z.shape == (2 * 4 - 1, 3 * 4 - 1)  # 5 maps in 3 columns
    for channel in range(5):
        row, column = divmod(channel, 3)
        block = z[row * 4 : row * 4 + 3, column * 4 : column * 4 + 3]
        np.testing.assert_array_equal(block, maps[channel].astype(np.float32))
        assert (np.asarray(heatmap.customdata)[row * 4 : row * 4 + 3, column * 4] == channel).all()
    dense = np.array([0.5, -1.0, 2.0], dtype=np.float16)
    [bar] = F.feature_map_grid(dense, "probe 0, 9:Dense").data
    assert isinstance(bar, go.Bar)
    np.testing.assert_array_equal(bar.y, dense.astype(np.float32))
    assert np.asarray(heatmap.z).dtype != np.float16 and np.asarray(bar.y).dtype != np.float16
    single = F.feature_map_grid(np.ones((4, 4)), "one map").data[0]
    assert np.shape(single.z) == (4, 4)


def test_feature_maps_with_both_signs_are_diverging_around_0_else_sequential_from_0():
    signed = np.array([[[-0.5, 2.0], [0.0, 1.0]]], dtype=np.float16)
    [heatmap] = F.feature_map_grid(signed, "00-Convolutional output").data
    assert (heatmap.zmin, heatmap.zmax, heatmap.zmid) == (-2.0, 2.0, 0)
    assert heatmap.colorscale == F.DIVERGING_SCALE
    [relu] = F.feature_map_grid(np.abs(signed), "02-ReLU output").data
    assert (relu.zmin, relu.zmax, relu.zmid) == (0, 2.0, None)
    assert relu.colorscale == F.SEQUENTIAL_SCALE
    [dead] = F.feature_map_grid(np.zeros((2, 3, 3)), "all zero").data
    assert (dead.zmin, dead.zmax) == (0, 1.0)  # still a valid scale


def test_a_reshape_says_it_repeats_the_layer_before_instead_of_drawing_it():
    flat = np.arange(512, dtype=np.float16)
    fig = F.feature_map_grid(flat, "06-Reshape output", layer_class="Reshape", previous="05-ReLU")
    assert fig.data == ()
    [note] = fig.layout.annotations
    assert note.text.startswith("Reshape: the same 512 values as 05-ReLU, flattened to (512,)")
    assert "pick the layer before" in note.text and fig.layout.title.text == "06-Reshape output"
    flatten = F.feature_map_grid(flat, "f", layer_class="Flatten").layout.annotations[0].text
    assert flatten.startswith("Flatten: the same 512 values as the layer before")
    assert isinstance(F.feature_map_grid(flat, "d", layer_class="Dense").data[0], go.Bar)


def test_the_last_layer_is_labelled_by_class():
    logits = np.linspace(-2, 2, 10)
    last = F.feature_map_grid(logits, "09-Dense output", layer_class="Dense", last=True)
    assert last.layout.xaxis.title.text == "class (logits)"
    assert list(last.layout.xaxis.tickvals) == list(range(10))
    assert last.data[0].hovertemplate.startswith("class %{x}")
    hidden = F.feature_map_grid(logits, "07-Dense output", layer_class="Dense")
    assert hidden.layout.xaxis.title.text == "unit" and hidden.layout.xaxis.tickvals is None


# ---------------------------------------------------------------------- probes


def test_probabilities_bar_highlights_the_label_and_a_wrong_prediction():
    probs = np.full(10, 0.02)
    probs[3], probs[8] = 0.7, 0.14
    [bar] = F.probabilities_bar(probs, label=8).data
    np.testing.assert_allclose(bar.y, probs)
    assert list(bar.x) == [str(c) for c in range(10)]
    colours = list(bar.marker.color)
    assert colours[8] == F.RIGHT_COLOR and colours[3] == F.WRONG_COLOR
    assert {colours[c] for c in range(10) if c not in (3, 8)} == {F.NEUTRAL_COLOR}
    right = F.probabilities_bar(probs, label=3)
    assert list(right.data[0].marker.color).count(F.WRONG_COLOR) == 0
    assert "predicted 3" in right.layout.title.text


def test_probe_image_shows_the_digit_and_the_verdict():
    image = np.random.default_rng(2).random((1, 28, 28), dtype=np.float32)
    fig = F.probe_image(image, label=7, predicted=1)
    np.testing.assert_array_equal(fig.data[0].z, image[0])
    assert fig.layout.title.text == "label 7, predicted 1"
    assert fig.layout.title.font.color == F.WRONG_COLOR
    assert fig.layout.yaxis.scaleanchor == "x"
    assert F.probe_image(image[0], 7, 7).layout.title.font.color == F.RIGHT_COLOR
    with pytest.raises(ValueError):
        F.probe_image(np.zeros((3, 28, 28)), 0, 0)


# ---------------------------------------------------------------------- gradcheck, empty


def test_gradcheck_table_formats_a_stored_report():
    layer = Dense(3, 2)
    passed = check_layer(layer, np.random.default_rng(0).normal(size=(2, 3))).to_dict()
    failed = {
        "subject": "7:Dense",
        "passed": False,
        "checks": [
            {
                **passed["checks"][1],
                "failures": 2,
                "checked": 6,
                "analytic": 0.5,
                "numeric": 0.25,
                "numeric_error": None,  # an older report stored no error estimate
                "max_abs_error": 0.25,
                "max_rel_error": None,  # NaN/inf, stored as null
                "passed": False,
                "status": "FAIL",
            },
            {**passed["checks"][0], "note": "backward returned NaN", "passed": False},
        ],
    }
    document = json.loads(json.dumps({"subject": "lenet", "reports": [passed, failed]}))
    document["created"], document["step"] = "2026-12-02T03:10:44+0000", 1234
    rows = F.gradcheck_table(document, 3)
    assert len(rows) == len(passed["checks"]) + 2
    assert {(r["date"], r["step"], r["report"]) for r in rows} == {
        ("2026-12-02 03:10", "1,234", "#3")
    }
    first = rows[0]
    check = passed["checks"][0]
    assert first["tensor"] == "input" and first["shape"] == "(2, 3)"
    assert first["max_abs_error"] == f"{check['max_abs_error']:.2e}"
    assert first["worst_index"] == str(tuple(check["worst_index"]))
    assert (first["status"], first["passed"]) == ("ok", True)
    assert rows[-2]["status"] == "FAIL 2/6 (analytic 0.5, numeric 0.25 at worst)"  # none stored
    assert rows[-2]["max_rel_error"] == "non-finite"
    assert rows[-2]["within"] == "layer alone" and rows[-2]["passed"] is False
    assert rows[-1]["status"] == "FAIL: backward returned NaN"
    for row in rows:  # DataTable cells: strings, numbers, booleans only
        assert {column["id"] for column in F.GRADCHECK_COLUMNS} <= set(row)
        assert all(isinstance(value, str | int | float | bool) for value in row.values())
    alone = F.gradcheck_table(passed)  # one report alone: no document, date or number
    assert alone[0]["date"] == alone[0]["report"] == "" and alone[0]["step"] == "saved weights"
    assert [r["tensor"] for r in alone] == [r["tensor"] for r in rows[: len(alone)]]


def test_gradcheck_table_status_is_the_cli_status_also_for_old_reports():
    import mutants

    x = np.random.default_rng(0).normal(size=(2, 4))
    failing = check_layer(mutants.DenseInputScaled(4, 3, rng=0), x)  # input fails
    missing = check_layer(mutants.ConvMissingBiasGrad((1, 4, 4), 2, 2, rng=0))  # a note
    kinks = check_layer(ReLU(), np.array([[0.0, 1.0, 0.0]]))
    checks = [*failing.checks, *missing.checks, *kinks.checks]
    document = {"reports": [failing.to_dict(), missing.to_dict(), kinks.to_dict()]}
    for entry in (c for report in document["reports"] for c in report["checks"]):
        entry["status"] = "FAIL" if not entry["passed"] else entry["status"]  # as stored before
    rows = F.gradcheck_table(json.loads(json.dumps(document)))
    assert [row["status"] for row in rows] == [check.status for check in checks]
    assert rows[0]["status"].startswith("FAIL 8/8 (analytic ")
    assert "FAIL: backward left grads['biases'] unset" in [row["status"] for row in rows]
    assert "ok (2 kinks)" in [row["status"] for row in rows]


def test_empty_figure_says_its_message():
    fig = F.empty_figure("no records yet")
    assert fig.data == ()
    assert fig.layout.annotations[0].text == "no records yet"
    assert fig.layout.xaxis.visible is False


# ---------------------------------------------------------------------- all panels, timed


def build_panels(data: dict, step: int, record: int, probe: int = 0) -> list:
    """Every panel of the dashboard for one step, from arrays already read."""
    stats, hist, edges = data["stats"], data["hist"], data["edges"]
    l2 = list(data["fields"]).index("l2")
    layer = data["focus_layer"]
    kernels, kernels0 = data["kernels"], data["kernels0"]
    probs = data["probs"][record, probe]
    label = int(data["labels"][probe])
    figures = [
        F.training_curves(data["metrics"], step),
        F.histogram_at_step(hist[record, layer, 0], edges, "activation"),
        F.histogram_at_step(hist[record, layer, 1], edges, "gradient"),
        F.histogram_over_time(data["steps"], hist[:, layer, 1], edges, step),
        F.gradient_flow(data["steps"], data["names"], stats[:, :, 1, l2], step),
        F.gradient_flow(
            data["steps"],
            data["ratio_names"],
            data["ratios"],
            step,
            "update ratio",
            F.UPDATE_RATIO_THRESHOLDS,
        ),
        *(F.kernel_grid(k, "kernels") for k in kernels),
        *(F.kernel_grid(k - k0, "change", True) for k, k0 in zip(kernels, kernels0, strict=True)),
        *(F.feature_map_grid(maps[probe], "features") for maps in data["features"]),
        F.probabilities_bar(probs, label),
        F.probe_image(data["images"][probe], label, int(np.argmax(probs))),
        F.empty_figure("no gradient check stored"),
    ]
    warnings = F.health_warnings(
        data["names"],
        {"activation": stats[record, :, 0], "gradient": stats[record, :, 1]},
        data["classes"],
        fields=data["fields"],
    ) + F.update_ratio_warnings(
        data["ratio_names"], data["ratios"][: record + 1], len(data["steps"])
    )
    table = F.gradcheck_table(data["gradcheck"])
    return [*figures, warnings, table]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    """A one-epoch lenet run on the bundled sample, recorded every 20 steps, with a check."""
    from labkit.cli import main

    path = tmp_path_factory.mktemp("figures") / "lenet"
    args = ["train", "--epochs", "1", "--record-every", "20", "--no-progress", "--out", str(path)]
    assert main(args) == 0
    assert main(["gradcheck", "--run", str(path), "--fast"]) == 0
    return path


def test_every_panel_of_a_real_run_step(real_run):
    from labkit.recording import open_recording

    run = open_recording(real_run)
    steps = run.steps
    step = int(steps[len(steps) // 2])
    record = len(steps) // 2
    ratio_names, ratios = run.update_ratios()
    weights, weights0 = run.weights(step), run.weights(int(steps[0]))
    convs = [run.key(index) for index in run.convolutions]
    features = run.feature_maps(step)
    gradchecks = run.gradchecks
    data = {
        "metrics": run.metrics(),
        "steps": steps,
        **run.tables(),
        "edges": run.hist_edges,
        "fields": run.stats_fields,
        "focus_layer": 3,
        "names": [e["name"] for e in run.layers],
        "classes": [e["class"] for e in run.layers],
        "ratio_names": ratio_names,
        "ratios": ratios,
        "kernels": [weights[key]["kernels"] for key in convs],
        "kernels0": [weights0[key]["kernels"] for key in convs],
        "features": [features[convs[-1]], features[run.layers[-3]["key"]]],
        "probs": np.array([run.probabilities(int(s)) for s in steps]),
        "labels": run.probe_labels,
        "images": run.probe_images,
        "gradcheck": gradchecks[-1] if gradchecks else {"reports": []},
    }
    panels = build_panels(data, step, record)
    figures = [panel for panel in panels if isinstance(panel, go.Figure)]
    assert len(figures) == len(panels) - 2
    kernel_z = np.asarray(figures[6].data[0].z)  # the first conv layer's kernels, wrapped
    np.testing.assert_array_equal(kernel_z[:5, :5], data["kernels"][0][0, 0])
    assert figures[4].layout.yaxis.type == "log"
    assert any(row["layer"] == "network" for row in panels[-1])  # the stored check's rows
    for fig in figures:
        validated(fig)


def test_the_validation_the_dashboard_skips_would_catch_a_bad_property():
    bad = F.figure([dict(type="scatter", x=[1], y=[1], colour="red")], "typo")
    with pytest.raises(ValueError, match="colour"):
        validated(bad)


def test_every_panel_of_a_2000_record_run_is_built():
    rng = np.random.default_rng(3)
    records, layers, params = 2_000, 10, 8
    steps = np.arange(1, records + 1) * 100
    metrics = step_rows(int(steps[-1])) + [epoch_row(int(s), i, 0.9) for i, s in enumerate(steps)]
    data = {
        "metrics": metrics,
        "steps": steps,
        "stats": rng.random((records, layers, 2, len(STATS_FIELDS)), dtype=np.float32),
        "hist": rng.integers(0, 400, (records, layers, 2, BINS)).astype(np.int32),
        "edges": HIST_EDGES,
        "fields": STATS_FIELDS,
        "focus_layer": 3,
        "names": [f"{i}:Layer" for i in range(layers)],
        "classes": ["ReLU"] * layers,
        "ratio_names": [f"p{i}" for i in range(params)],
        "ratios": rng.random((records, params), dtype=np.float32) * 1e-2,
        "kernels": [rng.normal(size=(16, 1, 5, 5)), rng.normal(size=(32, 16, 5, 5))],
        "kernels0": [np.zeros((16, 1, 5, 5)), np.zeros((32, 16, 5, 5))],
        "features": [rng.random((16, 32, 8, 8)), rng.random((16, 128))],
        "probs": rng.dirichlet(np.ones(10), size=(records, 16)),
        "labels": np.arange(16) % 10,
        "images": rng.random((16, 1, 28, 28), dtype=np.float32),
        "gradcheck": {"reports": []},
    }
    step = int(steps[records // 2])
    panels = build_panels(data, step, records // 2)
    assert len(panels[0].data[0].x) <= F.MAX_POINTS + 1
    assert np.shape(panels[3].data[0].z) == (BINS, records)


def test_magic_underscores_are_spelled_out_for_plotly_js():
    assert F.nested({"title_text": "a", "title_font": {"color_x": 1}, "error_y": {"a_b": 2}}) == {
        "title": {"text": "a", "font": {"color": {"x": 1}}},
        "error_y": {"a": {"b": 2}},
    }
    fig = F.figure([dict(type="bar", y=[1], marker={"line_width": 0})], "t", xaxis_title_text="s")
    assert fig.to_dict()["data"][0]["marker"] == {"line": {"width": 0}}
    assert fig.layout.xaxis.title.text == "s"
    assert underscored_keys({"xaxis": {"title_text": "s"}}) == ["xaxis.title_text"]


def test_arrays_in_a_patch_are_the_typed_arrays_plotly_sends():
    for array in (np.arange(6.0).reshape(2, 3).astype(np.float32), np.arange(4, dtype=np.int32)):
        fig = go.Figure([dict(type="heatmap", z=array)])
        assert F.typed(array) == fig.to_dict()["data"][0]["z"]  # what plotly.py writes
    assert F.typed(np.array(["a"], dtype=object)).tolist() == ["a"]  # not numeric: as is
    assert F.typed({"title": go.layout.Title(text="t")}) == {"title": {"text": "t"}}
