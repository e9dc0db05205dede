"""The labkit command line: training on the bundled sample, evaluation, and bad input."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from labkit.cli import build_parser, main
from labkit.network import Network


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run the console entry point in a fresh interpreter, as a user would."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LABKIT_DATA", None)
    return subprocess.run(
        [sys.executable, "-m", "labkit.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


@pytest.fixture(autouse=True)
def _no_labkit_data(monkeypatch):
    monkeypatch.delenv("LABKIT_DATA", raising=False)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """The README's third command: default training on the bundled sample."""
    out = tmp_path_factory.mktemp("run") / "lenet"
    result = run_cli("train", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_default_training_on_the_sample_beats_90_percent(trained_run):
    history = json.loads((trained_run / "history.json").read_text())
    assert len(history["epochs"]) == 5
    assert history["epochs"][-1]["test_accuracy"] > 0.90
    assert history["config"]["data"].startswith("sample")
    assert history["interrupted"] is False


def test_training_is_deterministic_for_a_seed(tmp_path):
    for name in ("a", "b", "c"):
        seed = "7" if name != "c" else "8"
        args = ["train", "--model", "tutorial", "--epochs", "1", "--no-progress"]
        assert main([*args, "--seed", seed, "--out", str(tmp_path / name)]) == 0
    a, b, c = (np.load(tmp_path / n / "weights.npz") for n in "abc")
    assert all(np.array_equal(a[k], b[k]) for k in a.files)
    assert not all(np.array_equal(a[k], c[k]) for k in a.files if k != "__architecture__")


def test_evaluate_prints_accuracy_and_writes_confusion_figure(trained_run, capsys):
    figure = trained_run / "cm.png"
    assert main(["evaluate", str(trained_run), "--figure", str(figure)]) == 0
    out = capsys.readouterr().out
    history = json.loads((trained_run / "history.json").read_text())
    assert f"accuracy {history['epochs'][-1]['test_accuracy']:.2%}" in out
    assert "true\\pred" in out
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_saved_weights_reload_into_the_same_network(trained_run):
    network = Network.load(trained_run / "weights.npz")
    assert len(network.layers) == 10


def test_existing_run_is_never_overwritten(trained_run):
    before = (trained_run / "weights.npz").read_bytes()
    result = run_cli("train", "--out", str(trained_run), "--epochs", "1")
    assert result.returncode == 2
    assert "already holds a trained run" in result.stderr
    assert (trained_run / "weights.npz").read_bytes() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--model", "alexnet"], "'alexnet': not a preset (lenet, tutorial)"),
        (["train", "--epochs", "0"], "must be positive"),
        (["train", "--epochs", "two"], "expected a positive integer"),
        (["train", "--lr", "-0.1"], "must be a positive finite number"),
        (["train", "--lr", "nan"], "must be a positive finite number"),
        (["train", "--batch-size", "0"], "must be positive"),
        (["train", "--data", "no/such/mnist.npz"], "no/such/mnist.npz"),
        (["evaluate", "no/such/weights.npz"], "no/such/weights.npz"),
    ],
)
def test_bad_input_is_one_line_with_status_2(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    try:
        status = main(args)
    except SystemExit as exit:  # argparse's own errors
        status = exit.code
    stderr = capsys.readouterr().err
    assert status == 2
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "runs").exists()


def test_bad_input_in_a_real_process_prints_no_traceback(tmp_path):
    result = run_cli("train", "--data", "missing.npz", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("labkit train: error: ")
    assert "Traceback" not in result.stderr


def test_corrupt_files_are_reported_in_one_line(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a zip file")
    for args in (["train", "--data", str(junk)], ["evaluate", str(junk)]):
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 2
        assert str(junk) in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_ctrl_c_keeps_the_weights_trained_so_far(tmp_path):
    out = tmp_path / "interrupted"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "labkit.cli", "train", "--epochs", "50", "--no-progress"]
        + ["--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout.readline().startswith("training lenet")
    assert process.stdout.readline().startswith("epoch 1/50")  # some training has happened
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted (SIGINT) after" in stdout
    assert "Traceback" not in stderr
    history = json.loads((out / "history.json").read_text())
    assert history["interrupted"] is True
    assert 1 <= len(history["epochs"]) < 50
    assert Network.load(out / "weights.npz").parameter_count() > 0


def test_import_labkit_does_not_import_tensorflow():
    code = (
        "import labkit, labkit.cli, dashboards.app, dashboards.callbacks, sys; "
        "assert 'tensorflow' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


HEAVY = ("numpy", "scipy", "zarr", "dash", "plotly", "matplotlib", "tensorflow", "tqdm")
HELP_IMPORTS = """
import sys
from labkit.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(" ".join(sorted({name.split(".")[0] for name in sys.modules})))
"""


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["train"],
        ["evaluate"],
        ["gradcheck"],
        ["inspect"],
        ["explain"],
        ["runs", "list"],
        ["dashboard"],
    ],
    ids=lambda command: " ".join(["labkit", *command, "--help"]),
)
def test_help_imports_nothing_heavy(command):
    """`labkit --help` and each command's: the parser is built from labkit.options and
    the command modules, which import NumPy and the rest only when the command runs."""
    result = subprocess.run(
        [sys.executable, "-c", HELP_IMPORTS, *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "usage: labkit" in result.stdout
    imported = set(result.stdout.split("\n")[-2].split())
    assert "labkit" in imported and not imported & set(HEAVY)


def test_every_optimizer_has_its_default_learning_rate():
    from labkit.optim import OPTIMIZERS
    from labkit.options import DEFAULT_LR

    assert set(DEFAULT_LR) == set(OPTIMIZERS)  # DEFAULT_LR's keys are --optimizer's choices


def test_console_script_is_installed():
    result = subprocess.run(["labkit", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "train" in result.stdout and "evaluate" in result.stdout


def every_parser(parser: argparse.ArgumentParser):
    """The parser and each (sub)command's, depth first: labkit, labkit train, ..."""
    yield parser
    for action in parser._actions:
        if isinstance(action.choices, dict):  # a subparsers action: name -> parser
            for child in action.choices.values():
                yield from every_parser(child)


def test_every_option_has_a_help_line_and_shows_its_default():
    parsers = list(every_parser(build_parser()))
    assert {p.prog for p in parsers} >= {"labkit train", "labkit runs list", "labkit dashboard"}
    for parser in parsers:
        page = " ".join(parser.format_help().split())  # one line: wrapping aside
        assert not [bad for bad in ("None)", "False)", "[])") if f"(default: {bad}" in page]
        for action in parser._actions:
            name = "/".join(action.option_strings) or action.metavar or action.dest
            assert action.help, f"{parser.prog} {name}: no help"
            if action.nargs == 0 or action.required or isinstance(action.choices, dict):
                continue  # a flag (--fast, --help), a required argument, the subcommands
            shown = action.default not in (None, [], argparse.SUPPRESS)
            said = "default" in action.help  # in words: "(default: every core; 1: serial)"
            assert said or shown, f"{parser.prog} {name}: no default shown"
            if shown and not said:
                assert f"(default: {action.default})" in page, f"{parser.prog} {name}"
