"""Issue 14, section 5: the CLI's remaining tracebacks, each now one line on stderr with
exit status 2 (``labkit <command>: error: ...``), refused before any work where it can be.

The pipe and TensorFlow cases need a real process: tests/test_cli_errors_process.py.
"""

from __future__ import annotations

import errno
import importlib.resources
import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from labkit.checks import digits
from labkit.cli import main
from labkit.data import data_name, keras_cache_path, load_mnist, source_of
from labkit.gradcheck import GradcheckError
from labkit.network import Network
from labkit.recording import open_recording

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
    monkeypatch.setattr("labkit.data.load_mnist", no_work)  # the command imports it when run
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


# 3. weights that are not numbers


@pytest.mark.parametrize(
    ("value", "model", "dtype"),
    [
        ("a", [], "<U1"),
        ("a", ["--model", "lenet"], "<U1"),
        ("1.5", ["--model", "lenet"], "<U3"),  # was read as 1.5
        (1 + 1j, ["--model", "lenet"], "complex128"),  # was read without its 1j
    ],
)
def test_weights_that_are_not_real_numbers_are_one_line_naming_the_file_and_the_array(
    run_dir, tmp_path, capsys, value, model, dtype
):
    arrays = dict(np.load(run_dir / "weights.npz"))
    arrays["3.kernels"] = np.full(arrays["3.kernels"].shape, value)
    path = tmp_path / "strings.npz"
    np.savez(path, **arrays)
    figure = tmp_path / "confusion.png"
    line = one_line(capsys, ["evaluate", str(path), *model, "--figure", str(figure)])
    assert line.endswith(
        f"{path}: weight 3.kernels has dtype {dtype}, not real numbers (float or int)"
    )
    assert not figure.exists()


def test_a_weights_file_without_an_architecture_is_still_one_line(tmp_path, capsys):
    path = tmp_path / "only-model.npz"
    np.savez(path, **{"__model__": np.array("lenet"), "00-Dense.weights": np.array(["a"])})
    line = one_line(capsys, ["evaluate", str(path)])
    assert f"{path}: not a labkit weights file" in line


def test_a_network_without_ten_outputs_is_one_line(run_dir, tmp_path, capsys):
    arrays = dict(np.load(run_dir / "weights.npz"))
    architecture = json.loads(str(arrays["__architecture__"]))[:3]  # conv, pool, relu
    arrays["__architecture__"] = np.array(json.dumps(architecture))
    path = tmp_path / "headless.npz"
    np.savez(path, **arrays)
    line = one_line(capsys, ["evaluate", str(path), "--figure", str(tmp_path / "c.png")])
    assert f"{path}: this network gives 2,304 outputs per digit, not one per class (10)" in line


# 4. gradcheck --run with another network's --model


@pytest.mark.parametrize("model", ["tutorial", SMALL])
def test_gradcheck_of_another_networks_run_says_what_evaluate_says(run_dir, capsys, model):
    said = [
        one_line(capsys, [command, *where, "--model", model]).partition(": error: ")[2]
        for command, where in (("evaluate", [str(run_dir)]), ("gradcheck", ["--run", str(run_dir)]))
    ]
    assert said[0] == said[1]
    assert said[0].startswith(f"--model {model} is not the network of {run_dir / 'weights.npz'}: ")


# 5. a writing error at the end of training


def test_a_full_disk_when_the_weights_are_saved_is_one_line(tmp_path, capsys, monkeypatch):
    def full(self, path, *, model=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Network, "save", full)
    out = tmp_path / "full"
    line = one_line(capsys, ["train", *TRAIN, "--out", str(out)])
    assert line.startswith(f"labkit train: error: {out}")  # the run, or the file in it
    assert "No space left on device" in line


def test_a_writing_error_names_the_file_when_the_os_does(tmp_path, capsys, monkeypatch):
    target = tmp_path / "ro" / "weights.npz"

    def read_only(self, path, *, model=None):
        raise PermissionError(errno.EACCES, "Permission denied", str(target))

    monkeypatch.setattr(Network, "save", read_only)
    line = one_line(capsys, ["train", *TRAIN, "--out", str(tmp_path / "ro")])
    assert f"error: {target}: " in line and "Permission denied" in line


# 7. gradcheck --json DIR/report.json


def test_gradcheck_json_creates_the_missing_folders(tmp_path, capsys):
    report = tmp_path / "new" / "deeper" / "report.json"
    assert main(["gradcheck", "--model", SMALL, "--fast", "--json", str(report)]) == 0
    assert f"report written to {report}" in capsys.readouterr().out
    assert json.loads(report.read_text())["passed"] is True


@pytest.mark.parametrize(("where", "problem"), [("file/dir", "is a file"), ("", "is a folder")])
def test_gradcheck_json_that_cannot_be_written_fails_before_the_check(
    tmp_path, capsys, monkeypatch, where, problem
):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setattr("labkit.checks.check_all", no_work)
    report = tmp_path / where / "report.json"
    if not where:
        report.mkdir()
    line = one_line(capsys, ["gradcheck", "--fast", "--json", str(report)])
    assert f"{report}: cannot write the report" in line and problem in line


# 8. gradcheck --batch larger than the sample


def test_a_batch_larger_than_the_sample_is_refused_with_the_maximum(capsys, monkeypatch):
    monkeypatch.setattr("labkit.checks.check_all", no_work)
    line = one_line(capsys, ["gradcheck", "--fast", "--batch", "100000"])
    assert line.endswith(
        "--batch 100000: the largest batch is 500 (the bundled sample's test digits)"
    )


def test_the_check_input_never_holds_fewer_digits_than_asked():
    x, y = digits(500)
    assert x.shape == (500, 1, 28, 28) and y.shape == (500, 10)
    with pytest.raises(GradcheckError, match="batch 501: the bundled sample has 500 test digits"):
        digits(501)


# 9. inspect --step outside the run


@pytest.mark.parametrize("step", [-5, 0, 10**5])
def test_a_step_outside_the_run_is_refused_with_its_first_and_last(run_dir, capsys, step):
    steps = open_recording(run_dir).steps
    out = run_dir / "never"
    line = one_line(capsys, ["inspect", str(run_dir), "--step", str(step), "--out", str(out)])
    assert line.endswith(
        f"--step {step}: outside the run ({run_dir} recorded steps {steps[0]} to {steps[-1]})"
    )
    assert not out.exists()


# 10. dashboard of a missing folder


@pytest.mark.parametrize(("name", "problem"), [("nonexistent", "no such folder"), ("file", "not")])
def test_the_dashboard_of_a_missing_folder_is_one_line(
    tmp_path, capsys, monkeypatch, name, problem
):
    import dashboards.app

    monkeypatch.setattr(dashboards.app, "serve", no_work)
    (tmp_path / "file").write_text("")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    line = one_line(capsys, ["dashboard", str(tmp_path / name), "--port", str(port)])
    assert f"{tmp_path / name}: {problem}" in line


# 11. evaluate on the run's own data; figures named by data set


@pytest.fixture(scope="module")
def own_data_run(tmp_path_factory):
    """A run trained on a data file of its own (part of the sample, 120 test digits),
    passed as a relative --data."""
    root = tmp_path_factory.mktemp("own-data")
    sample = importlib.resources.files("labkit").joinpath("assets", "mnist_sample.npz")
    with importlib.resources.as_file(sample) as path, np.load(path) as arrays:
        np.savez(
            root / "digits.npz",
            **{key: arrays[key][:256] for key in ("x_train", "y_train")},
            **{key: arrays[key][:120] for key in ("x_test", "y_test")},
        )
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        assert main(["train", *TRAIN, "--data", "digits.npz", "--out", "run"]) == 0
    return root / "run"


def test_evaluate_uses_the_runs_own_data_and_keeps_each_data_sets_figure(
    own_data_run, capsys, monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)  # elsewhere: the relative --data was recorded absolute
    assert main(["evaluate", str(own_data_run)]) == 0
    out = capsys.readouterr().out
    assert "on 120 test digits" in out
    assert f"data: {own_data_run.parent / 'digits.npz'} (the run's own)" in out
    own = own_data_run / "confusion-digits.png"
    assert f"confusion matrix figure: {own}" in out
    before = own.read_bytes()
    assert main(["evaluate", str(own_data_run / "weights.npz"), "--data", "sample"]) == 0
    out = capsys.readouterr().out
    assert "on 500 test digits" in out
    assert f"confusion matrix figure: {own_data_run / 'confusion-sample.png'}" in out
    assert own.read_bytes() == before


def test_evaluate_says_when_the_runs_own_data_is_gone(own_data_run, tmp_path, capsys):
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(own_data_run / "weights.npz", moved)
    gone = tmp_path / "gone.npz"
    (moved / "history.json").write_text(json.dumps({"config": {"data": str(gone)}}))
    line = one_line(capsys, ["evaluate", str(moved)])
    assert f"{gone}: no such file" in line
    assert f"the data {moved} was trained on; pass --data for other digits" in line


def test_each_kind_of_data_source_reads_back_from_its_description(own_data_run):
    data_file = own_data_run.parent / "digits.npz"
    for source in ("sample", str(data_file)):
        description = load_mnist(source).source
        assert load_mnist(source_of(description)).source == description
    assert [data_name(load_mnist(s).source) for s in ("sample", data_file)] == ["sample", "digits"]
    assert source_of("/data/idx (IDX files)") == "/data/idx"
    assert source_of("downloaded through tensorflow.keras.datasets.mnist") == str(
        keras_cache_path()
    )
