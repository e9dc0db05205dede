"""Shared test settings: deterministic hypothesis runs, so CI never flakes on a new draw."""

import os
import shutil

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_setup_options():
    """Chrome options for dash[testing]'s browser tests: headless Chromium, run as root."""
    from selenium.webdriver.chrome.options import Options

    options = Options()
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "SEVERE"})  # for get_logs()
    if shutil.which("chromium"):
        options.binary_location = shutil.which("chromium")
    return options


@pytest.fixture(autouse=True)
def _no_data_from_the_environment(monkeypatch):
    """Tests train on the bundled sample: a user's LABKIT_DATA must not change them."""
    monkeypatch.delenv("LABKIT_DATA", raising=False)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """One small recorded lenet run (1 epoch on the bundled sample), trained once for the
    dashboard tests that copy it; never change it in place."""
    from labkit.cli import main

    root = tmp_path_factory.mktemp("trained")
    args = ["train", "--epochs", "1", "--record-every", "20", "--no-progress"]
    assert main([*args, "--out", str(root / "run")]) == 0
    return root / "run"


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory, trained):
    """A runs folder holding one copy of ``trained`` as ``lenet``, for a test module's
    servers; a test that changes runs makes its own folder."""
    import shutil

    folder = tmp_path_factory.mktemp("runs")
    shutil.copytree(trained, folder / "lenet")
    return folder
