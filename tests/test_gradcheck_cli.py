"""``labkit gradcheck``: the table, the exit status, JSON and run reports, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labkit.cli import main
from labkit.layers import Dense, Reshape
from labkit.models import MODELS
from labkit.network import Network


class DenseWeightsScaled(Dense):
    """A wrong Dense: the weight gradient is 1.01 times too large."""

    def backward(self, output_gradient, learning_rate=None):
        input_gradient = super().backward(output_gradient)
        self.grads["weights"] = self.grads["weights"] * 1.01
        self.sgd_update(learning_rate)
        return input_gradient


def test_fast_check_of_lenet_passes_and_lists_every_layer(capsys):
    assert main(["gradcheck", "--fast"]) == 0
    out = capsys.readouterr().out
    for name in ("00-Convolutional", "01-MaxPool", "03-Convolutional", "07-Dense", "09-Dense"):
        assert name in out
    assert "network" in out
    assert "all passed" in out


def test_full_check_of_the_tutorial_with_a_sample_of_elements(capsys):
    assert main(["gradcheck", "--model", "tutorial", "--max-elements", "50"]) == 0
    out = capsys.readouterr().out
    assert "03-Dense" in out and "weights" in out and " full " in out


def test_a_wrong_layer_fails_with_status_1_and_names_the_tensor(monkeypatch, capsys, tmp_path):
    def broken(seed=0, dtype=np.float32):
        return Network([Reshape((1, 28, 28), (784,)), DenseWeightsScaled(784, 10, rng=seed)])

    monkeypatch.setitem(MODELS, "lenet", broken)
    report_path = tmp_path / "report.json"
    assert main(["gradcheck", "--fast", "--json", str(report_path)]) == 1
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "tensors checked" not in line]
    failing = [line for line in rows if "FAIL" in line]
    assert failing and all("weights" in line for line in failing)
    document = json.loads(report_path.read_text())
    assert document["passed"] is False
    failed = [
        (check["layer"], check["tensor"])
        for report in document["reports"]
        for check in report["checks"]
        if not check["passed"]
    ]
    assert ("01-DenseWeightsScaled", "weights") in failed
    assert {tensor for _, tensor in failed} == {"weights"}


def test_run_weights_are_checked_and_the_report_is_stored_in_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    train = ["train", "--model", "tutorial", "--epochs", "1", "--no-progress", "--out", str(run)]
    assert main(train) == 0
    assert main(["gradcheck", "--run", str(run), "--fast"]) == 0
    stored = list((run / "gradchecks").glob("gradcheck-*.json"))
    assert len(stored) == 1
    document = json.loads(stored[0].read_text())
    assert document["passed"] is True
    assert document["subject"] == f"run {run}"
    assert str(stored[0]) in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["gradcheck", "--run", "no/such/run"], "no/such/run: no such run folder"),
        (["gradcheck", "--model", "vgg"], "'vgg': not a preset (lenet, tutorial)"),
        (["gradcheck", "--max-elements", "0"], "must be positive"),
        (["gradcheck", "--oracle", "torch"], "invalid choice: 'torch'"),
    ],
)
def test_bad_input_is_one_line_with_status_2(args, message, capsys):
    try:
        status = main(args)
    except SystemExit as exit:
        status = exit.code
    err = capsys.readouterr().err
    assert status == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
