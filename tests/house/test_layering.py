"""The house's layering (docs/ARCHITECTURE.md), checked by walking every import statement.

Imports flow one way, downwards:

    ophclip.cli, ophclip.demo            the face
    ophclip.train                        the one engine and its objectives
    ophclip.eval, ophclip.datasets       evaluation engines, dataset adapters
    ophclip (core)                       model, loss, data, memory, transforms, prompts, ...
    retrieval, data_pipeline             never import ophclip; retrieval not data_pipeline either
    ophbase                              errors, atomic I/O, video probe, device

Imports inside functions count as much as those at the top of a module, and so do
``importlib.import_module("literal")`` calls: a lazy import hides an arrow, it does not remove it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("ophbase", "retrieval", "data_pipeline", "ophclip", "benchmarks")

# Deprecated names kept as thin forwarding aliases (module __getattr__); each one is an upward
# arrow on purpose, so that code written against the old path keeps working for one release.
DEPRECATED_ALIASES = {
    ("ophclip.ssl", "ophclip.train.objectives.ssl"),
    ("ophclip.distill", "ophclip.train.objectives.distill"),
    ("ophclip.zero_shot", "ophclip.eval.zero_shot"),
    ("ophclip.probe", "ophclip.eval"),
    ("ophclip.evaluate", "ophclip.eval"),
}

FACE = ("ophclip.cli", "ophclip.demo", "ophclip.__main__")
TRAIN = ("ophclip.train",)
EVAL = ("ophclip.eval", "ophclip.datasets")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, source: str, is_package: bool, modules: dict[str, Path]) -> set[str]:
    """Every module of ours that ``module`` imports, wherever the statement is."""
    tree = ast.parse(source)
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            # ``from pkg import sub`` imports the submodule when there is one, else a name of pkg.
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and not node.args[0].value.startswith(".")):
            names = [node.args[0].value]
        for name in names:
            if name.split(".")[0] in PACKAGES:
                target = _resolve(name, modules)
                if target and target != module:
                    found.add(target)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(m, p.read_text(encoding="utf-8"), p.name == "__init__.py", modules) for m, p in modules.items()}


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _layer(module: str) -> int:
    """Higher layers may import lower ones only."""
    top = module.split(".")[0]
    if top == "ophbase":
        return 0
    if top in ("retrieval", "data_pipeline"):
        return 1
    if top == "benchmarks":
        return 6
    if _within(module, FACE):
        return 5
    if _within(module, TRAIN):
        return 4
    if _within(module, EVAL):
        return 3
    return 2  # ophclip core (and the package itself)


def test_imports_only_flow_downwards(graph):
    upward = []
    for module, targets in graph.items():
        for target in targets:
            if (module, target) in DEPRECATED_ALIASES or target == "ophclip":
                continue  # the package root re-exports the core API lazily
            if _layer(target) > _layer(module):
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that point up a layer (see docs/ARCHITECTURE.md):\n" + "\n".join(sorted(upward))


def test_the_low_packages_stay_independent(graph):
    wrong = []
    for module, targets in graph.items():
        top = module.split(".")[0]
        for target in targets:
            other = target.split(".")[0]
            if top == "retrieval" and other not in ("retrieval", "ophbase"):
                wrong.append(f"{module} -> {target}")
            if top == "data_pipeline" and other not in ("data_pipeline", "ophbase"):
                wrong.append(f"{module} -> {target}")
            if top == "ophbase" and other != "ophbase":
                wrong.append(f"{module} -> {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_private_module_is_imported_from_another_package(graph):
    wrong = [f"{m} -> {t}" for m, ts in graph.items() for t in ts
             if any(part.startswith("_") and part != "__main__" for part in t.split("."))
             and t.split(".")[0] != m.split(".")[0]]
    assert not wrong, "\n".join(sorted(wrong))


def test_there_are_no_import_cycles(graph):
    edges = {m: {t for t in ts if (m, t) not in DEPRECATED_ALIASES} for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checker_sees_arrows_it_must_refuse():
    """The walker itself: a lazy import, a relative import and an import_module literal are all edges."""
    source = (
        "import importlib\n"
        "from . import sibling\n"
        "def f():\n"
        "    from benchmarks.run import main\n"
        "    return importlib.import_module('ophclip.train')\n"
    )
    modules = {**_modules(), "ophclip._layering_probe": REPO, "ophclip.sibling": REPO}
    found = _imports("ophclip._layering_probe", source, False, modules)
    assert found == {"ophclip.sibling", "benchmarks.run", "ophclip.train"}
    assert _layer("benchmarks.run") > _layer("ophclip.zero_shot")
    assert _layer("ophclip.train.engine") > _layer("ophclip.eval.zero_shot") > _layer("ophclip.model")


def _function_imports_without_a_reason(path: Path) -> list[str]:
    """Imports inside a function body with no ``# lazy:`` comment on them or above their block of imports."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source)
    found = []
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            # Walk up over the contiguous imports, blank lines and comments right above this one.
            row, reason = node.lineno - 1, False
            while row >= 0:
                text = lines[row].strip()
                if "# lazy:" in lines[row]:
                    reason = True
                    break
                if row < node.lineno - 1 and text and not text.startswith(("#", "import ", "from ")):
                    break
                row -= 1
            if not reason:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return sorted(set(found))


def test_imports_sit_at_the_top_unless_a_comment_says_why():
    """An import inside a function is deliberate (an optional dependency, CLI start-up time) and says so."""
    found = [hit for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))
             for hit in _function_imports_without_a_reason(path)]
    assert not found, "imports inside functions without a `# lazy: <why>` comment:\n" + "\n".join(found)
