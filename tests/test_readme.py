"""README's Python recipe, run as written: each ```python block of "### From Python", in
order, in one namespace, in a fresh folder (the dashboard's server is not started)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from labkit.layers import registry

README = Path(__file__).resolve().parents[1] / "README.md"


def section_blocks(title: str) -> list[str]:
    """The ```python blocks of the README section headed ``title``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n{title}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end >= 0 else None]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_recipe_has_its_five_steps():
    blocks = section_blocks("### From Python")
    assert len(blocks) == 5
    assert "fit(" in blocks[1] and "check_all(" in blocks[2] and "serve(" in blocks[4]


def test_the_python_recipe_runs_as_written(tmp_path, monkeypatch):
    import dash

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(registry, "_registered", {})  # the recipe registers its layer
    served = []
    monkeypatch.setattr(dash.Dash, "run", lambda app, **options: served.append((app, options)))
    namespace = {"__name__": "__main__"}
    for block in section_blocks("### From Python"):
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
    assert namespace["result"].weights == Path("runs/leaky-py/weights.npz")
    assert (tmp_path / "runs/leaky-py/weights.npz").is_file()
    assert namespace["result"].test_accuracy > 0.5
    assert namespace["suite"].passed and len(namespace["suite"].checks) == 23
    run, step = namespace["run"], namespace["step"]
    assert run.kernels(0, step).shape == (8, 1, 3, 3)
    rebuilt = run.network_at(step)
    np.testing.assert_array_equal(
        rebuilt.layers[0].params["kernels"], namespace["network"].layers[0].params["kernels"]
    )
    [(app, options)] = served
    assert options["port"] == 8050 and options["host"] == "127.0.0.1"
    assert app.labkit_store.runs_dir == Path("runs")
