"""synthgen's layers import only downward, and nothing imports in a circle.

The order below is the one place that defines the layering. A module may import from its own layer and from the
layers listed before it, never from a later one:

    core (errors, io, config, validation, ...)  <  data  <  sampling  <  models  <  metrics, reports
    <  curation, privacy  <  export  <  stages (one module per DVC stage)  <  cli (console commands)

Two packages of one layer may import each other in one direction only: the package-level import graph (every
``import`` statement, also those inside functions) has no cycle, and neither has the module-level graph of the
imports that run when a module is loaded (module scope, ``TYPE_CHECKING`` blocks excluded). Imports are read
statically (ast), so a lazy import inside a function counts for the layering too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

#: bottom to top; a unit is a subpackage of synthgen, or "core"/"cli" for the top-level modules listed below.
LAYERS: list[set[str]] = [
    {"core"},
    {"data"},
    {"sampling"},
    {"models"},
    {"metrics", "reports"},
    {"curation", "privacy"},
    {"export"},
    {"stages"},
    {"cli"},
]
#: top-level modules of the package (``synthgen/<name>.py``) and their unit.
#: ``budget`` and ``project`` (``synthgen init``) arrive with the packaging work (issue 16 items 2 and 4).
TOP_LEVEL = {"__init__": "core", "errors": "core", "io": "core", "config": "core", "config_rules": "core",
             "validation": "core", "sizing": "core", "runner": "core", "shards": "core", "budget": "core", "project": "core", "threads": "core",
             "precision": "core",
             "cli": "cli"}


def rank(unit: str) -> int:
    for i, layer in enumerate(LAYERS):
        if unit in layer:
            return i
    raise AssertionError(f"{unit!r} is in no layer: add it to LAYERS (or TOP_LEVEL) in tests/test_layers.py")


def unit_of(module: str) -> str:
    """``synthgen.models.gan`` -> ``models``; ``synthgen.io`` -> ``core`` (via TOP_LEVEL)."""
    parts = module.split(".")
    if len(parts) == 1:
        return TOP_LEVEL["__init__"]
    if parts[1] in TOP_LEVEL and len(parts) == 2:
        return TOP_LEVEL[parts[1]]
    return parts[1]


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imports(path: Path, root: Path, modules: set[str]) -> list[tuple[str, bool]]:
    """``(imported synthgen module, at load time?)`` for every import statement of one file.

    ``from pkg import name`` names ``pkg.name`` when that is a module, else ``pkg``; relative imports are
    resolved against the file's package. "At load time" means at module scope (not in a function or class
    body, not under ``if TYPE_CHECKING``).
    """
    name = module_name(path, root)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, eager: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((a.name, eager) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package[:len(package) - child.level + 1]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                for a in child.names:
                    sub = f"{mod}.{a.name}"
                    found.append((sub if sub in modules else mod, eager))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                visit(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child):
                visit(child, False)
            else:
                visit(child, eager)

    visit(tree, True)
    return [(m, e) for m, e in found if m.split(".")[0] == "synthgen" and m != name]


def import_graph(root: Path) -> dict[str, list[tuple[str, bool]]]:
    """Every module under ``root/synthgen`` -> its synthgen imports (see :func:`imports`)."""
    files = sorted((root / "synthgen").rglob("*.py"))
    modules = {module_name(f, root) for f in files}
    return {module_name(f, root): imports(f, root, modules) for f in files}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of a directed graph, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def dfs(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state:
                found = dfs(m)
                if found:
                    return found
        path.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state:
            found = dfs(n)
            if found:
                return found
    return None


def violations(root: Path) -> list[str]:
    """Every upward import and cycle in the package under ``root``, as readable lines (empty: all good)."""
    graph = import_graph(root)
    problems = []
    units: dict[str, set[str]] = {}
    eager: dict[str, set[str]] = {}
    for mod, imported in sorted(graph.items()):
        for target, at_load in imported:
            u, v = unit_of(mod), unit_of(target)
            if rank(v) > rank(u):
                problems.append(f"upward import: {mod} ({u}) imports {target} ({v})")
            if u != v:
                units.setdefault(u, set()).add(v)
            if at_load and target in graph:
                eager.setdefault(mod, set()).add(target)
    cycle = find_cycle(units)
    if cycle:
        problems.append("package cycle: " + " -> ".join(cycle))
    cycle = find_cycle(eager)
    if cycle:
        problems.append("module import cycle at load time: " + " -> ".join(cycle))
    return problems


def test_synthgen_imports_only_downward_and_without_cycles():
    problems = violations(REPO)
    assert not problems, "\n".join(problems)


def test_every_package_has_a_layer():
    for path in (REPO / "synthgen").rglob("*.py"):
        rank(unit_of(module_name(path, REPO)))


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / "synthgen" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_the_check_finds_upward_imports_and_cycles(tmp_path):
    clean = {"__init__.py": "", "errors.py": "", "data/__init__.py": "", "models/__init__.py": "",
             "models/base.py": "from ..data import x\n", "sampling/__init__.py": "",
             "sampling/ddim.py": "from ..errors import E\n"}
    assert violations(_write(tmp_path / "clean", clean)) == []
    # A lazy upward import (inside a function) is still upward.
    upward = dict(clean, **{"data/reader.py": "def f():\n    from ..models.base import G\n"})
    found = violations(_write(tmp_path / "up", upward))
    assert found[0] == "upward import: synthgen.data.reader (data) imports synthgen.models.base (models)", found
    # Two packages of one layer importing each other, and two modules importing each other at load time.
    same = {"__init__.py": "", "metrics/__init__.py": "", "reports/__init__.py": "",
            "metrics/a.py": "from ..reports import b\n", "reports/b.py": "from ..metrics.a import f\n"}
    found = violations(_write(tmp_path / "cycle", same))
    assert any(p.startswith("package cycle: metrics -> reports -> metrics") for p in found), found
    assert any(p.startswith("module import cycle at load time: synthgen.metrics.a") for p in found), found
    # ... but a lazy import back inside one package is not a load-time cycle.
    lazy = {"__init__.py": "", "data/__init__.py": "", "data/a.py": "from .b import f\n",
            "data/b.py": "def f():\n    from .a import g\n"}
    assert violations(_write(tmp_path / "lazy", lazy)) == []


def test_unknown_package_must_be_placed(tmp_path):
    with pytest.raises(AssertionError, match="in no layer"):
        violations(_write(tmp_path, {"__init__.py": "", "newpkg/__init__.py": "", "newpkg/m.py": "import synthgen\n"}))


def test_every_synthgen_import_names_an_existing_module():
    # An import inside a function of a module that no longer exists (a file moved to another layer) only fails
    # when that function runs; catch it here, for every import statement.
    files = sorted((REPO / "synthgen").rglob("*.py"))
    modules = {module_name(f, REPO) for f in files}
    packages = {m.rsplit(".", 1)[0] for m in modules if "." in m} | {"synthgen"}
    missing = {name: sorted({m for m, _ in deps if m not in modules and m not in packages})
               for name, deps in import_graph(REPO).items()}
    missing = {k: v for k, v in missing.items() if v}
    assert not missing, f"imports of synthgen modules that do not exist: {missing}"
