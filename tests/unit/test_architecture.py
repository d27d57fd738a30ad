"""The layout the code promises (docs/decisions.md): no import circle, nothing against the layers, small files.

An AST import graph of the product packages, every import counted (also those inside functions: a lazy import is
still a dependency, and a circle through one is still a circle). Layers, bottom up: `mlops/` imports no service;
`batch/`, `model_orchestration/`, `monitoring/`, `reporting/` and `simulation_business/` import nothing from
`server/`; flows never import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mlops.settings import PROJECT_ROOT

PACKAGES = (
    "mlops",
    "server",
    "model_orchestration",
    "monitoring",
    "reporting",
    "simulation_business",
    "batch",
    "native",
)
SERVICES = tuple(p for p in PACKAGES if p != "mlops")
MAX_LINES = 400
MAX_README_LINES = 250
FLOWS = {
    "model_orchestration.train_flow",
    "model_orchestration.promote_flow",
    "model_orchestration.materialize_flow",
    "reporting.create_report",
    "batch.flow",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def product_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (PROJECT_ROOT / package).rglob("*.py"))


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The product modules `path` imports (`from a.b import c` counts a.b.c when that is a module, else a.b)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in product_files()}
    modules = set(files)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        own_packages = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        graph[name] = imports_of(path, modules) - {name} - own_packages
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def package_of(module: str) -> str:
    return module.split(".")[0]


def test_no_import_circle() -> None:
    assert circles(import_graph()) == []


def test_circles_are_found() -> None:
    """The checker itself: a two-module circle and a three-module one are reported, a chain is not."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert sorted(circles(graph)) == [["a", "b"], ["c", "d", "e"]]


def test_mlops_imports_no_service() -> None:
    wrong = {
        (module, target)
        for module, targets in import_graph().items()
        if package_of(module) == "mlops"
        for target in targets
        if package_of(target) in SERVICES
    }
    assert wrong == set()


@pytest.mark.parametrize("package", ["batch", "model_orchestration", "monitoring", "reporting", "simulation_business"])
def test_only_the_serving_layer_imports_server(package: str) -> None:
    wrong = {
        (module, target)
        for module, targets in import_graph().items()
        if package_of(module) == package
        for target in targets
        if package_of(target) == "server"
    }
    assert wrong == set()


def test_flows_never_import_each_other() -> None:
    graph = import_graph()
    wrong = {(flow, target) for flow in FLOWS for target in graph[flow] if target in FLOWS}
    assert wrong == set()


def test_no_product_file_over_the_limit() -> None:
    long = {
        str(p.relative_to(PROJECT_ROOT)): n
        for p in product_files()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"files over {MAX_LINES} lines hold two concepts: split them"


def test_readme_is_short() -> None:
    lines = len((PROJECT_ROOT / "README.md").read_text().splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; details belong in docs/"


def test_no_test_module_imports_another() -> None:
    """Shared helpers live in tests/support (and conftest fixtures), never in another test module."""
    wrong = []
    for path in sorted((PROJECT_ROOT / "tests").rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and ".test_" in f".{node.module}":
                wrong.append((str(path.relative_to(PROJECT_ROOT)), node.module))
            if isinstance(node, ast.ImportFrom) and node.module in ("tests.conftest", "conftest"):
                wrong.append((str(path.relative_to(PROJECT_ROOT)), node.module))
    assert wrong == []


def test_the_settings_reference_is_in_step_with_the_settings() -> None:
    from mlops.settings import Settings
    from mlops.settings_reference import TARGET, render

    assert [name for name, field in Settings.model_fields.items() if not field.description] == []
    assert TARGET.read_text() == render(), "run: python -m mlops.settings_reference"
