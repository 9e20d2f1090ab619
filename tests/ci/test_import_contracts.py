"""The import contracts ([tool.importlinter] in pyproject.toml) hold, as the lint step checks them."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]


def test_every_import_contract_is_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert len(contracts) >= 9  # the service's four, the harness's three and the two across packages
    assert f"{len(contracts)} kept, 0 broken" in result.stdout, result.stdout[-2000:]


def import_cycles(packages: tuple[str, ...] = ("service", "harness", "bench", "steps")) -> list[list[str]]:
    """Every set of project modules that import one another in a circle (imports for type checking only
    left out), by Tarjan's strongly connected components over grimp's import graph."""
    graph = grimp.build_graph(*packages, exclude_type_checking_imports=True)
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & graph.modules) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in edges[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in modules:
        if module not in index:
            visit(module)
    return cycles


def test_no_project_modules_import_one_another_in_a_circle() -> None:
    assert import_cycles() == []


def imports_inside_functions(roots: tuple[str, ...] = ("service", "harness", "steps", "bench")) -> list[str]:
    """Each import of a project module made inside a function with no comment saying why (on its line or the
    line before): ``path:line: statement``."""
    project = {"service", "harness", "steps", "bench", "tests"}
    found = []
    for root in roots:
        for path in sorted((ROOT / root).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            lines = text.splitlines()
            for node in ast.walk(ast.parse(text)):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom):
                        module = inner.module or ""
                    elif isinstance(inner, ast.Import):
                        module = inner.names[0].name
                    else:
                        continue
                    line, before = lines[inner.lineno - 1], lines[inner.lineno - 2] if inner.lineno > 1 else ""
                    if module.split(".")[0] in project and "#" not in line and not before.strip().startswith("#"):
                        found.append(f"{path.relative_to(ROOT)}:{inner.lineno}: {line.strip()}")
    return sorted(set(found))


def test_no_project_import_inside_a_function_without_a_reason() -> None:
    assert imports_inside_functions() == []
