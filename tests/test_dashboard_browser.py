"""The dashboard in a real browser (headless Chromium through dash[testing]'s dash_duo)."""

from __future__ import annotations

import shutil

import pytest
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait

from dashboards.app import create_app
from dashboards.gradchecks import gradcheck_rows
from dashboards.store import RunStore
from labkit.cli import main

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (shutil.which("chromium") and shutil.which("chromedriver")),
        reason="needs Debian's chromium and chromium-driver (installed by .ci/run)",
    ),
]

KERNELS_Z = "return document.querySelector('#kernels .js-plotly-plot').data[0].z;"


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    args = ["train", "--epochs", "1", "--record-every", "20", "--no-progress"]
    assert main([*args, "--out", str(root / "small")]) == 0
    return root


def test_stepping_changes_the_label_and_the_kernels_without_console_errors(dash_duo, runs_dir):
    dash_duo.start_server(create_app(runs_dir))
    dash_duo.wait_for_contains_text("#step-label", "step 63", timeout=20)  # the last record
    dash_duo.wait_for_element("#kernels .js-plotly-plot", timeout=20)
    dash_duo.find_element("#kernel-mode input[value='change']").click()
    dash_duo.wait_for_contains_text("#kernels", "change since the first record", timeout=20)
    before = dash_duo.driver.execute_script(KERNELS_Z)
    for _ in range(3):
        dash_duo.find_element("#back").click()
    dash_duo.wait_for_contains_text("#step-label", "step 50", timeout=20)
    WebDriverWait(dash_duo.driver, 20).until(lambda d: d.execute_script(KERNELS_Z) != before)
    assert dash_duo.get_logs() == []


def test_console_errors_would_be_seen(dash_duo, runs_dir):
    """The check above can fail: an error logged in the page shows up in get_logs()."""
    dash_duo.start_server(create_app(runs_dir))
    dash_duo.wait_for_contains_text("#step-label", "step", timeout=20)
    dash_duo.driver.execute_script("console.error('labkit test error')")
    logs = dash_duo.get_logs()
    assert any("labkit test error" in entry["message"] for entry in logs)


def test_arrow_keys_step_the_slider(dash_duo, runs_dir):
    dash_duo.start_server(create_app(runs_dir))
    dash_duo.wait_for_contains_text("#step-label", "step 63", timeout=20)
    body = dash_duo.find_element("body")
    body.send_keys(Keys.ARROW_LEFT)
    dash_duo.wait_for_contains_text("#step-label", "step 60", timeout=20)
    body.send_keys(Keys.ARROW_LEFT)
    dash_duo.wait_for_contains_text("#step-label", "step 55", timeout=20)
    body.send_keys(Keys.ARROW_RIGHT)
    dash_duo.wait_for_contains_text("#step-label", "step 60", timeout=20)
    assert dash_duo.get_logs() == []


def test_the_check_button_fills_the_paged_table(dash_duo, runs_dir):
    """The button is off while its check runs; the table gets its pages from the server."""
    dash_duo.start_server(create_app(runs_dir))
    dash_duo.wait_for_contains_text("#step-label", "step 63", timeout=20)
    button = dash_duo.find_element("#run-check")
    button.click()
    dash_duo.wait_for_contains_text("#check-status", "all passed", timeout=60)
    assert button.is_enabled()
    rows = len(gradcheck_rows(RunStore(runs_dir).get("small")))
    pages = -(-rows // 12)
    assert pages > 1
    dash_duo.wait_for_contains_text(".previous-next-container", f"/ {pages}", timeout=20)
    first = dash_duo.find_element("#gradchecks tbody tr:nth-child(2)").text
    assert len(dash_duo.find_elements("#gradchecks tbody tr")) == 12 + 1  # and the header
    dash_duo.find_element(".next-page").click()
    WebDriverWait(dash_duo.driver, 20).until(
        lambda d: d.find_element("css selector", "#gradchecks tbody tr:nth-child(2)").text != first
    )
    button.click()
    dash_duo.wait_for_contains_text("#check-status", "the same as the stored report", timeout=60)
    assert dash_duo.get_logs() == []


def figure_traces(driver, graph: str) -> int:
    return driver.execute_script(
        f"const p = document.querySelector('#{graph} .js-plotly-plot');"
        " return p && p.data ? p.data.length : -1;"
    )


def marker_at(driver, graph: str):
    """Where the step marker (the figure's first shape) of ``graph`` is drawn."""
    return driver.execute_script(
        f"const p = document.querySelector('#{graph} .js-plotly-plot');"
        " return p && p.layout && p.layout.shapes && p.layout.shapes.length"
        " ? p.layout.shapes[0].x0 : null;"
    )


def test_the_address_opens_a_view_and_follows_it(dash_duo, runs_dir):
    """A link to step 40, layer 3, probe 3 opens exactly that; stepping rewrites it."""
    dash_duo.start_server(create_app(runs_dir))
    base = dash_duo.server_url
    dash_duo.driver.get(f"{base}/?run=small&step=42&layer=03-Convolutional&probe=3")
    dash_duo.wait_for_contains_text("#step-label", "step 40 ·", timeout=20)  # at or before
    dash_duo.wait_for_contains_text("#layer", "03-Convolutional", timeout=20)
    dash_duo.wait_for_contains_text("#probe", "probe 3", timeout=20)
    dash_duo.wait_for_contains_text("#kernels", "03-Convolutional kernels at step 40", timeout=20)
    dash_duo.find_element("#back").click()
    dash_duo.wait_for_contains_text("#step-label", "step 35 ·", timeout=20)
    WebDriverWait(dash_duo.driver, 20).until(lambda d: "step=35" in d.current_url)
    for graph in ("curves", "gradient-flow", "hist-time"):  # moved in the browser
        WebDriverWait(dash_duo.driver, 20).until(lambda d, g=graph: marker_at(d, g) == 35)
    assert "run=small" in dash_duo.driver.current_url
    assert "layer=03-Convolutional" in dash_duo.driver.current_url
    assert dash_duo.get_logs() == []


def test_a_compared_run_is_overlaid_panel_by_panel(dash_duo, runs_dir, tmp_path):
    shutil.copytree(runs_dir / "small", tmp_path / "small")
    args = ["train", "--epochs", "1", "--batch-size", "256", "--record-every", "2"]
    assert main([*args, "--no-progress", "--out", str(tmp_path / "wide")]) == 0
    dash_duo.start_server(create_app(tmp_path))
    dash_duo.driver.get(f"{dash_duo.server_url}/?run=small&compare=wide")
    dash_duo.wait_for_contains_text("#step-label", "step 63", timeout=20)
    layers = len(RunStore(tmp_path).get("small").run.layers)
    wait = WebDriverWait(dash_duo.driver, 20)
    wait.until(lambda d: figure_traces(d, "curves") == 6)  # each curve twice
    wait.until(lambda d: figure_traces(d, "gradient-flow") == 2 * layers)
    wait.until(lambda d: figure_traces(d, "hist-activation") == 2)
    dash_duo.wait_for_contains_text("#hist-activation", "wide at step 8", timeout=20)
    assert "compare=wide" in dash_duo.driver.current_url
    assert dash_duo.get_logs() == []


def test_a_folder_of_200_runs_opens_on_the_newest(dash_duo, runs_dir, tmp_path):
    import json

    shutil.copytree(runs_dir / "small", tmp_path / "student-000")
    shutil.copytree(runs_dir / "small", tmp_path / "student-042")
    for index in range(1, 200):  # links inside the folder: runs like any other, made at once
        if index != 42:
            (tmp_path / f"student-{index:03d}").symlink_to("student-000")
    manifest = tmp_path / "student-042" / "manifest.json"
    document = json.loads(manifest.read_text())
    document["created"] = "2099-01-01T00:00:00+0000"  # the newest, though not last by name
    manifest.write_text(json.dumps(document))
    dash_duo.start_server(create_app(tmp_path))
    dash_duo.wait_for_contains_text("#run", "student-042", timeout=30)
    dash_duo.wait_for_contains_text("#step-label", "step 63", timeout=30)
    WebDriverWait(dash_duo.driver, 20).until(lambda d: "run=student-042" in d.current_url)
    dash_duo.find_element("#run").click()  # the list (a pop-up outside #run) finds any run
    WebDriverWait(dash_duo.driver, 20).until(
        lambda d: d.find_elements("css selector", "[role=option]")
    )
    dash_duo.find_element("input[placeholder='Search']").send_keys("student-199")
    WebDriverWait(dash_duo.driver, 20).until(
        lambda d: any(
            e.text.startswith("student-199 (completed")
            for e in d.find_elements("css selector", "[role=option]")
        )
    )
    assert dash_duo.get_logs() == []
