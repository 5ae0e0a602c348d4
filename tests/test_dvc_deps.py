"""The DVC graph cannot go stale: every synthgen module a stage imports is one of that stage's deps.

DVC re-runs a stage only when one of its listed deps changes. A module that a stage imports but does not list
(directly or through a listed folder) can change without re-running the stage, and ``dvc repro`` then
reports an up-to-date pipeline whose outputs came from other code. The imports are read statically from the
source (every ``import`` statement, including those inside functions), so lazy imports count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "synthgen"


def _module_file(name: str) -> Path | None:
    """``synthgen.a.b`` -> its file (module or package ``__init__``), None when it is not in the package."""
    parts = name.split(".")
    if parts[0] != "synthgen":
        return None
    base = REPO.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    """Absolute names of the synthgen modules one file imports (``from . import x`` resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if path.is_relative_to(PACKAGE):
        rel = path.relative_to(REPO).with_suffix("")
        package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    else:
        package = []
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)  # `from pkg import module`
    return {n for n in names if n.split(".")[0] == "synthgen"}


def _closure(entry: Path) -> set[Path]:
    """Every synthgen source file reachable from ``entry`` by imports (parents' ``__init__`` included)."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        f = todo.pop()
        for name in _imports(f):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__ too
                mf = _module_file(".".join(parts[:i]))
                if mf is not None and mf not in seen:
                    seen.add(mf)
                    todo.append(mf)
    return seen


def _registered(stage: str) -> set[Path]:
    """The module :data:`synthgen.runner.STAGES` runs for ``stage`` and everything it imports (the stage scripts
    reach it by name, which an import scan cannot see)."""
    from synthgen.runner import STAGES

    if stage not in STAGES:
        return set()
    module = _module_file(STAGES[stage].partition(":")[0])
    assert module is not None, f"synthgen.runner.STAGES[{stage!r}] names no module of this checkout"
    return {module} | _closure(module)


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


def test_every_imported_module_is_a_stage_dep():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    missing = {}
    for name, stage in stages.items():
        deps = [str(d) for d in stage.get("deps", [])]
        scripts = [d for d in deps if d.startswith("pipelines/") and d.endswith(".py")]
        assert scripts, f"stage {name} lists no pipelines/ script"
        for script in scripts:
            lacking = sorted(str(p.relative_to(REPO)) for p in _closure(REPO / script) | _registered(name)
                             if p.name != "__init__.py" and not _covered(p, deps))
            if lacking:
                missing[name] = lacking
    assert not missing, f"dvc.yaml stages import modules they do not list as deps: {missing}"


def test_the_check_sees_lazy_and_relative_imports(tmp_path):
    # The privacy stage imports the diffusion model lazily (loss-based MIA) and through relative imports.
    closure = {str(p.relative_to(REPO)) for p in _closure(REPO / "pipelines" / "privacy.py") | _registered("privacy")}
    assert "synthgen/privacy/audit.py" in closure and "synthgen/config.py" in closure
    assert not _covered(PACKAGE / "privacy" / "audit.py", ["synthgen/models", "pipelines/privacy.py"])
