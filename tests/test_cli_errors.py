"""Issue 14, section 5: the CLI's remaining tracebacks, each now one line on stderr with
exit status 2 (``labkit <command>: error: ...``), refused before any work where it can be.

The pipe and TensorFlow cases need a real process: tests/test_cli_errors_process.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.cli import main
from labkit.commands import evaluate as evaluate_command

TRAIN = ["--epochs", "1", "--record-every", "20", "--no-progress"]
SMALL = str(Path(__file__).resolve().parents[1] / "examples" / "small_net.json")


def status_of(argv: list[str]) -> int:
    """main's exit status, or argparse's (which exits instead of returning)."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code


def one_line(capsys, argv: list[str]) -> str:
    """The one line ``labkit`` wrote on stderr, after checking status 2 and no traceback."""
    status = status_of(argv)
    captured = capsys.readouterr()
    assert status == 2, captured
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"labkit {argv[0]}: error: "), lines[0]
    return lines[0]


def no_work(*args, **kwargs):
    raise AssertionError("the work started before the mistake was refused")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("errors") / "run"
    assert main(["train", *TRAIN, "--out", str(out)]) == 0
    return out


# 1. --seed -1


@pytest.mark.parametrize("command", [["train", *TRAIN, "--out", "run"], ["gradcheck", "--fast"]])
def test_a_negative_seed_is_refused_by_argparse(command, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_line(capsys, [*command, "--seed", "-1"])
    assert line.endswith("argument --seed: must be a non-negative integer, got -1")
    assert "expected a non-negative integer, got 'x'" in one_line(capsys, [*command, "--seed", "x"])
    assert not (tmp_path / "run").exists()


# 2. evaluate --figure out.xyz


def test_an_unknown_figure_extension_is_refused_before_any_work(
    run_dir, capsys, monkeypatch, tmp_path
):
    monkeypatch.setattr(evaluate_command, "load_mnist", no_work)
    figure = tmp_path / "out.xyz"
    line = one_line(capsys, ["evaluate", str(run_dir), "--figure", str(figure)])
    assert f"--figure {figure}: matplotlib cannot write .xyz files" in line
    assert all(f" {name}," in line for name in ("pdf", "png", "svg"))
    assert not figure.exists()


def test_a_figure_without_extension_is_a_png_under_that_very_name(run_dir, capsys, tmp_path):
    figure = tmp_path / "confusion"
    assert main(["evaluate", str(run_dir), "--figure", str(figure)]) == 0
    assert f"confusion matrix figure: {figure}\n" in capsys.readouterr().out
    assert figure.read_bytes().startswith(b"\x89PNG")
