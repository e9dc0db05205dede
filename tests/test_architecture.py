"""The house rules that keep one home for each fact, checked on the source tree itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    path
    for folder in ("labkit", "dashboards", "benchmarks")
    for path in (ROOT / folder).rglob("*.py")
)
# The names of what a recorded run holds: spelled in the labkit/recording package only.
RECORDING_NAMES = {"stats", "hist", "update_ratio", "stats_fields", "hist_edges"}
RECORDING_PREFIXES = ("params/", "features/", "probe/", "backward/")
MAX_LINES = 450


def string_constants(path: Path) -> list[tuple[int, str]]:
    """Every string literal in a module that is not a docstring, with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_the_recording_layout_is_spelled_in_one_module():
    assert SOURCES, "no sources found"
    spelled = []
    for path in SOURCES:
        if path.parent == ROOT / "labkit" / "recording":
            continue
        for line, text in string_constants(path):
            if text in RECORDING_NAMES or text.startswith(RECORDING_PREFIXES):
                spelled.append(f"{path.relative_to(ROOT)}:{line}: {text!r}")
    assert spelled == []


def test_the_scan_sees_a_spelled_name(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('"""doc: params/x"""\nNAME = "params/00-Dense/weights"\n')
    assert string_constants(module) == [(2, "params/00-Dense/weights")]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path):
    if path.parent.name == "benchmarks":
        pytest.skip("benchmarks are scripts, compared with peers side by side")
    assert len(path.read_text(encoding="utf-8").splitlines()) <= MAX_LINES
