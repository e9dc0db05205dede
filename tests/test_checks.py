"""The standard check (labkit.checks.check_all) and its report document (CheckSuite.to_dict)."""

from __future__ import annotations

import json

import mutants as m
import numpy as np
import pytest

from labkit.checks import check_all, digits, jitter_biases, layer_inputs
from labkit.cli import main
from labkit.gradcheck import GradcheckError
from labkit.layers import Dense, ReLU, Reshape
from labkit.models import lenet
from labkit.network import Network
from labkit.reports import CheckSuite

DOCUMENT_KEYS = {"subject", "created", "mode", "oracle", "seconds", "passed", "reports"}


def small_network(seed: int = 0) -> Network:
    """A tiny MNIST-shaped network (fast enough for a full check): reshape, dense, relu, dense."""
    rng = np.random.default_rng(seed)
    return Network(
        [Reshape((1, 28, 28), (784,)), Dense(784, 8, rng=rng), ReLU(), Dense(8, 10, rng=rng)]
    )


def test_every_layer_then_the_whole_network_in_order():
    network = jitter_biases(lenet(seed=0), 0)
    suite = check_all(network, fast=True, subject="lenet")
    names = [layer.name for layer in network.layers]
    assert [report.subject for report in suite.reports] == [*names, "network"]
    for layer, report in zip(network.layers, suite.reports, strict=False):
        differenced = [c for c in report.checks if c.against == "numeric"]
        assert [c.tensor for c in differenced] == ["input", *layer.params]
        assert {c.mode for c in differenced} == {"fast"}
    network_report = suite.reports[-1]
    assert network_report.checks[0].layer == "network"
    params = [(layer.name, p) for layer in network.layers for p in layer.params]
    assert [(c.layer, c.tensor) for c in network_report.checks[1:]] == params
    assert suite.passed and suite.failures == []
    assert suite.checks == [c for report in suite.reports for c in report.checks]
    assert (suite.subject, suite.mode, suite.oracle, suite.step) == ("lenet", "fast", None, None)
    assert suite.seconds > 0


def test_full_mode_checks_every_element_of_each_layer_on_its_own_input():
    network = small_network()
    x, y = digits(2, seed=1)
    suite = check_all(network, x, y, seed=1)
    inputs = layer_inputs(network, x)
    assert len(suite.reports) == len(network.layers) + 1
    for layer_x, report in zip(inputs, suite.reports, strict=False):
        assert report.checks[0].shape == layer_x.shape
        differenced = [c for c in report.checks if c.against == "numeric"]
        assert all(c.mode == "full" and c.checked == np.prod(c.shape) for c in differenced)
    assert {c.mode for c in suite.reports[-1].checks} == {"fast"}  # the network: always fast
    assert suite.passed, suite.table()
    capped = check_all(network, x, y, seed=1, max_elements=5)
    differenced = [
        c for report in capped.reports[:-1] for c in report.checks if c.against == "numeric"
    ]
    assert max(c.checked for c in differenced) == 5


def test_the_default_input_is_the_sample_digits():
    network = small_network()
    x, y = digits(3, seed=2)
    assert x.shape == (3, 1, 28, 28) and y.shape == (3, 10)
    assert (
        check_all(network, fast=True, batch=3, seed=2).to_dict()["reports"]
        == check_all(network, x, y, fast=True, seed=2).to_dict()["reports"]
    )


def test_a_wrong_layer_fails_the_suite_and_is_named():
    rng = np.random.default_rng(0)
    network = Network([Reshape((1, 28, 28), (784,)), m.DenseBiasWrongAxis(784, 10, rng=rng)])
    suite = check_all(network, fast=True)
    assert not suite.passed and suite.to_dict()["passed"] is False
    assert {(c.layer, c.tensor) for c in suite.failures} == {("01-DenseBiasWrongAxis", "bias")}
    failing = [line for line in suite.table().splitlines() if "FAIL" in line]
    assert len(failing) == 2  # in the layer's check and in the network's
    for line in failing:
        assert line.split()[:2] == ["01-DenseBiasWrongAxis", "bias"]
        assert line.endswith("FAIL: gradient has shape (2,), expected (10,)")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"oracle": "torch"}, "unknown oracle 'torch'"),
        ({"x": np.zeros((2, 1, 28, 28))}, "pass both x and y"),
        ({"loss": "hinge"}, "unknown loss 'hinge'"),
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs, message):
    with pytest.raises(Exception, match=message) as exc_info:
        check_all(small_network(), fast=True, **kwargs)
    assert "\n" not in str(exc_info.value)
    if "oracle" in kwargs or "x" in kwargs:
        assert exc_info.type is GradcheckError


def test_progress_bar_only_when_asked_or_on_a_terminal(capsys):
    network = small_network()
    check_all(network, fast=True)  # auto: stderr is not a terminal here
    check_all(network, fast=True, progress=False)
    assert capsys.readouterr().err == ""
    check_all(network, fast=True, progress=True)
    assert "gradcheck" in capsys.readouterr().err


# -- the report document ---------------------------------------------------------------------


def test_the_document_has_the_keys_and_the_step_only_when_set():
    suite = check_all(small_network(), fast=True, subject="tiny")
    document = json.loads(json.dumps(suite.to_dict()))
    assert set(document) == DOCUMENT_KEYS
    assert document["subject"] == "tiny" and document["mode"] == "fast"
    assert document["oracle"] is None and document["seconds"] == suite.seconds
    assert document["passed"] is True
    assert document["reports"] == [json.loads(report.to_json()) for report in suite.reports]
    suite.step = 40
    assert suite.to_dict()["step"] == 40 and set(suite.to_dict()) == DOCUMENT_KEYS | {"step"}


def test_the_cli_json_is_the_suites_document(tmp_path, capsys):
    path = tmp_path / "report.json"
    assert main(["gradcheck", "--fast", "--seed", "3", "--json", str(path)]) == 0
    written = json.loads(path.read_text())
    subject = "lenet (fresh, seed 3, random biases)"
    suite = check_all(jitter_biases(lenet(seed=3), 3), fast=True, seed=3, subject=subject)
    expected = suite.to_dict()
    assert set(written) == set(expected) == DOCUMENT_KEYS
    for key in ("seconds", "created"):  # when and how long: the only differences
        written.pop(key), expected.pop(key)
    assert written == json.loads(json.dumps(expected))
    out = capsys.readouterr().out
    assert suite.table() in out


def test_an_empty_suite_passes_and_has_an_empty_table_body():
    suite = CheckSuite([], subject="nothing", mode="full")
    assert suite.passed and suite.checks == []
    assert len(suite.table().splitlines()) == 2  # header and rule


@pytest.mark.tensorflow
def test_the_oracle_comes_after_the_network_when_asked():
    pytest.importorskip("tensorflow")
    network = small_network()
    suite = check_all(network, fast=True, oracle="tensorflow")
    names = [layer.name for layer in network.layers]
    assert [report.subject for report in suite.reports] == [*names, "network", *names]
    for layer, report in zip(network.layers, suite.reports[len(names) + 1 :], strict=True):
        assert [c.tensor for c in report.checks] == ["output", "input", *layer.params]
        assert {c.mode for c in report.checks} == {"tensorflow"}
    assert suite.passed, suite.table()
    assert suite.to_dict()["oracle"] == "tensorflow"
