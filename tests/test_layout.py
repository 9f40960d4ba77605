"""The package's shape: stages as packages, no import circles, no private names across modules,
each public name defined once, and the light stages import no torch (nor Ray) when imported."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "evalsuite"
STAGES = ("tasks", "engine", "precision", "run", "run/executors", "scaling",
          "scaling/observational", "leaderboard", "cli", "testing", "ladder")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports_of(name: str) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every import in a module, function-local
    ones included (a lazy import is still a dependency). ``from pkg import mod`` counts as an
    import of ``pkg.mod``."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("evalsuite"):
                continue
            names = [a.name for a in node.names]
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            if submodules:
                out.extend((m, [], node.lineno) for m in submodules)
            rest = [n for n in names if f"{target}.{n}" not in MODULES]
            if rest or not submodules:
                out.append((target, rest, node.lineno))
        elif isinstance(node, ast.Import):
            out.extend((a.name, [], node.lineno) for a in node.names
                       if a.name.startswith("evalsuite"))
    return out


def test_the_stages_are_packages():
    for stage in STAGES:
        assert (ROOT / stage / "__init__.py").is_file(), f"evalsuite/{stage}/ is not a package"
    flat = sorted(p.name for p in ROOT.glob("*.py"))
    assert flat == ["__init__.py", "__main__.py", "importer.py", "records.py", "series.py",
                    "stats.py", "store.py", "versions.py"], flat


def test_no_import_circles():
    graph = {m: {t for t, _, _ in imports_of(m) if t in MODULES and t != m} for m in MODULES}
    # a package's __init__ re-exporting its own submodules is not a circle through them
    for m in graph:
        if MODULES[m].name != "__init__.py":
            graph[m] = {t for t in graph[m] if not m.startswith(t + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_private_names_imported_across_modules():
    bad = []
    for m in MODULES:
        for target, names, line in imports_of(m):
            for n in names:
                if n.startswith("_") and not (n.startswith("__") and n.endswith("__")):
                    bad.append(f"{MODULES[m].relative_to(ROOT.parent)}:{line} imports {n} "
                               f"from {target}")
    assert not bad, "\n".join(bad)


def test_each_public_name_is_defined_once():
    where: dict[str, list[str]] = {}
    for m, path in MODULES.items():
        if m.startswith("evalsuite.cli"):
            continue  # each subcommand module has its own add_parser/execute by design
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and not node.name.startswith("_"):
                where.setdefault(node.name, []).append(m)
    twice = {n: ms for n, ms in where.items() if len(ms) > 1}
    assert not twice, twice


@pytest.mark.parametrize("module", ["evalsuite", "evalsuite.scaling", "evalsuite.records",
                                    "evalsuite.store", "evalsuite.stats", "evalsuite.leaderboard",
                                    "evalsuite.run", "evalsuite.tasks", "evalsuite.precision"])
def test_light_imports(module):
    """Importing a stage loads neither torch nor Ray (scaling installs and runs without torch;
    the driver imports Ray only when a run asks for it)."""
    code = (f"import sys, {module}; heavy = [m for m in ('torch', 'ray', 'transformers') "
            "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, f"import {module} loaded {r.stdout.strip()} {r.stderr[-500:]}"
