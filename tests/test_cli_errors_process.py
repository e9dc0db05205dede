"""Issue 14, section 5, the cases that need a real process: stdout closed early (a pipe
into ``head -1``) and TensorFlow's start-up lines before ``--data auto``'s one line."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.cli import main

ROOT = Path(__file__).resolve().parents[1]

# `labkit evaluate` whose figure waits for a flag file: the test closes its end of the
# pipe, then writes the flag, so the next write surely finds the pipe closed.
EVALUATE_AFTER_FLAG = """
import sys, time
from pathlib import Path
import labkit.inspect as figures  # labkit evaluate imports its figure from here when run
flag, real = Path(sys.argv[1]), figures.confusion_figure
def confusion_figure(matrix):
    deadline = time.monotonic() + 120
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return real(matrix)
figures.confusion_figure = confusion_figure
from labkit.cli import main
sys.exit(main(sys.argv[2:]))
"""


def environment(**changes: str) -> dict[str, str]:
    """This process's environment, importing labkit from this clone, without LABKIT_DATA
    (nor PYTHONUNBUFFERED: stdout into a pipe is block-buffered, as usually)."""
    unset = ("LABKIT_DATA", "PYTHONUNBUFFERED")
    env = {key: value for key, value in os.environ.items() if key not in unset}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(changes)
    return env


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipe") / "run"
    train = ["train", "--epochs", "1", "--no-record", "--no-progress", "--out", str(out)]
    assert main(train) == 0
    return out


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
def test_stdout_closed_early_exits_quietly_with_status_141(run_dir, tmp_path, buffered):
    """``labkit evaluate RUN | head -1``: status 141 as git's (killed by SIGPIPE, 128 + 13),
    and nothing on stderr. Unbuffered, one line is read before the pipe closes; buffered,
    everything is written at the end, into a pipe closed before that."""
    flag = tmp_path / "closed"
    figure = tmp_path / "confusion.png"
    command = [sys.executable, *([] if buffered else ["-u"]), "-c", EVALUATE_AFTER_FLAG]
    child = subprocess.Popen(
        [*command, str(flag), "evaluate", str(run_dir), "--figure", str(figure)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(),
    )
    if not buffered:
        assert child.stdout.readline().startswith(b"accuracy ")
    child.stdout.close()
    flag.write_text("")
    err = child.stderr.read().decode()
    assert child.wait(timeout=120) == 141, err
    assert err == ""
    if buffered:  # the usual `| head -1`: all printed at the end, after the figure
        assert figure.is_file()


@pytest.mark.tensorflow
@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs tensorflow")
def test_data_auto_that_cannot_download_is_only_its_one_line(tmp_path):
    """TensorFlow's C++ start-up lines (oneDNN, CPU features, absl) are not shown; the
    download fails at once through a proxy that refuses connections."""
    env = environment(
        KERAS_HOME=str(tmp_path / "keras"),
        https_proxy="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
    )
    for key in [key for key in env if key.startswith("TF_") or key.lower() == "no_proxy"]:
        del env[key]
    train = ["train", "--data", "auto", "--no-progress", "--out", str(tmp_path / "run")]
    done = subprocess.run(
        [sys.executable, "-m", "labkit.cli", *train],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("labkit train: error: ")
    assert "MNIST not found and the download through tensorflow.keras failed" in lines[0]
    assert not (tmp_path / "run").exists()
