"""Reports and runs as HTML tables in a notebook (``_repr_html_``)."""

from __future__ import annotations

from labkit.checks import check_one_layer
from labkit.gradcheck import check_layer
from labkit.html import html_table
from labkit.layers import Dense
from labkit.recording import open_recording


class WrongDense(Dense):
    def backward(self, output_gradient, learning_rate=None):
        dx = output_gradient @ self.weights * 2  # wrong input gradient
        super().backward(output_gradient, learning_rate)
        return dx


def test_cells_are_escaped_and_flagged_rows_red():
    table = html_table(["a", "b"], [["<script>", 1], ["ok", 2]], caption="x & y", flagged=[True])
    assert "<script>" not in table and "&lt;script&gt;" in table and "x &amp; y" in table
    first, second = table.split("<tr>")[2:4]
    assert "color:#c0392b" in first and "color" not in second


def test_a_report_shows_each_tensor_and_its_verdict():
    good = check_layer(Dense(3, 2, rng=0))._repr_html_()
    # a header, then input, weights, bias by finite differences and again in float32
    assert "3 tensors checked: all passed" in good and good.count("<tr>") == 1 + 2 * 3
    bad = check_layer(WrongDense(3, 2, rng=0))._repr_html_()
    assert "1 FAILED" in bad and "FAIL 6/6" in bad
    suite = check_one_layer(WrongDense(3, 2, rng=0))._repr_html_()
    assert "gradient check of" in suite and "1 FAILED" in suite


def test_a_run_shows_its_status_and_layers(tmp_path):
    from labkit.fit import fit
    from labkit.models import lenet

    fit(lenet(), run=tmp_path / "run", epochs=1, record_every=50, progress=False)
    html = open_recording(tmp_path / "run")._repr_html_()
    assert "completed" in html and "best test accuracy" in html
    for key in ("00-Convolutional", "07-Dense", "kernels (16, 1, 5, 5)"):
        assert key in html
