"""notebooks/labkit_tour.ipynb runs top to bottom (nbclient, a real kernel), so it never
rots: every cell executes, the planted bug is caught inside it, and the figures, HTML
tables and the inline dashboard are all in its outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "labkit_tour.ipynb"


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    outputs = [out for cell in notebook.cells for out in cell.get("outputs", [])]
    kinds = [kind for out in outputs for kind in out.get("data", {})]
    assert kinds.count("image/png") >= 4  # digits, kernels, feature maps, kernel change
    tables = [out["data"]["text/html"] for out in outputs if "text/html" in out.get("data", {})]
    assert any("FAIL 4/4" in table and "DenseUpdatedFirst" in table for table in tables)
    assert any("00-Convolutional" in table and "all passed" in table for table in tables)
    assert any("<iframe" in table for table in tables)  # the dashboard, inline
    assert (tmp_path / "runs" / "notebook" / "weights.npz").is_file()
