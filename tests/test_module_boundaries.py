"""Module boundaries, read from the source with ``ast``: only the CLI imports the command
modules, and no module uses another module's ``_private`` names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("labkit", "dashboards", "benchmarks")


def sources() -> list[Path]:
    """Every Python file of the packages checked."""
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    """``labkit/commands/train.py`` -> ``labkit.commands.train`` (a package: its folder)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_ours(module: str) -> bool:
    """Whether ``module`` names a module or package of this project."""
    return module.split(".")[0] in PACKAGES


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The module a ``from ... import`` names, with relative levels resolved."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, node.module] if node.module else base)


def imported_modules(tree: ast.AST, importer: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, module)`` for every import anywhere in the file, lazy ones included; a
    ``from a import b`` counts as importing ``a`` and ``a.b``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = absolute(node, importer, is_package)
            found.append((node.lineno, module))
            found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
    return found


def private_uses(source: str, importer: str = "x", is_package: bool = False) -> list[str]:
    """Each ``_private`` name the source takes from another of our modules: imported by
    name (``from labkit.gradcheck import _name``) or read off an imported module
    (``gradcheck._name``)."""
    tree = ast.parse(source)
    modules: dict[str, str] = {}  # local name -> our module it is bound to
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if is_ours(alias.name):
                    local = alias.asname or alias.name.split(".")[0]
                    modules[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom):
            module = absolute(node, importer, is_package)
            if not is_ours(module):
                continue
            for alias in node.names:
                if is_private(alias.name):
                    problems.append(f"line {node.lineno}: from {module} import {alias.name}")
                else:
                    modules[alias.asname or alias.name] = f"{module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            chain, value = [], node.value
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in modules:
                owner = ".".join([modules[value.id], *reversed(chain)])
                if _is_module(owner):
                    problems.append(f"line {node.lineno}: {owner}.{node.attr}")
    return problems


def _is_module(dotted: str) -> bool:
    """Whether ``dotted`` is one of our modules (a file or a package), not a class in one."""
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_the_checker_finds_private_imports_and_private_attributes():
    oracle_before = (  # how labkit/oracle.py took the checker's helpers before labkit.reports
        "from labkit.gradcheck import (\n    OVERWROTE,\n    _labkit_pass,\n    _Settings,\n)\n"
    )
    assert private_uses(oracle_before) == [
        "line 1: from labkit.gradcheck import _labkit_pass",
        "line 1: from labkit.gradcheck import _Settings",
    ]
    assert private_uses("from labkit import gradcheck\ngradcheck._name(layer)\n") == [
        "line 2: labkit.gradcheck._name"
    ]
    assert private_uses("import labkit.gradcheck\nlabkit.gradcheck._summarize()\n") == [
        "line 2: labkit.gradcheck._summarize"
    ]
    assert private_uses("from . import _helpers\n", "labkit.layers", is_package=True) == [
        "line 1: from labkit.layers import _helpers"
    ]
    allowed = (
        "from __future__ import annotations\nimport numpy as np\nnp._NoValue\n"
        "from labkit.network import Network\nNetwork(layers)._assign\nself._cache\n"
    )
    assert private_uses(allowed) == []


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_uses_another_modules_private_names(path):
    name = module_name(path)
    assert private_uses(path.read_text(), name, path.name == "__init__.py") == []


def test_only_the_cli_imports_the_command_modules():
    offenders = []
    for path in sources():
        name = module_name(path)
        if name == "labkit.cli" or name.startswith("labkit.commands"):
            continue
        tree = ast.parse(path.read_text())
        for line, module in imported_modules(tree, name, path.name == "__init__.py"):
            if module == "labkit.commands" or module.startswith("labkit.commands."):
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert offenders == []
    assert any(
        module.startswith("labkit.commands")
        for _, module in imported_modules(
            ast.parse((ROOT / "labkit" / "cli.py").read_text()), "labkit.cli", False
        )
    )  # the scan sees the CLI's own import, so it would see another
