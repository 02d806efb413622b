"""The shape of the package: families are siblings.

`dlkit.core` and `dlkit.data` import no family, no family imports another, and no two modules of
core import each other (directly or round a longer cycle): what shared code needs from a family
goes through `dlkit.core.registry`. Only `dlkit.cli` (and `__main__`, `options`), at the top, may
import any family. Every import is counted, at module level or inside a function, read with
`ast` (nothing is imported here).
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dlkit"
SHARED = {"core", "data"}
TOP = {"cli", "__main__", "__init__", "options"}  # the top level: it may import anything


def _imports(path: Path) -> list[tuple[str, int]]:
    """The `dlkit.…` modules `path` imports (absolute and relative imports), with lines."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    here = ["dlkit", *path.relative_to(PACKAGE).with_suffix("").parts]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x, from ..core import y
                parent = here[:len(here) - node.level]
                base = ".".join([*parent, base] if base else parent)
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
            found.append((base, node.lineno))
    return [(name, line) for name, line in found if name.split(".")[0] == "dlkit"]


def _part(path: Path) -> str:
    """The top-level part of dlkit a file belongs to: a family, core, data, or the top."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _target(name: str) -> str | None:
    """The top-level part of dlkit an imported name lies in (None: dlkit itself)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


def _families() -> set[str]:
    return {p.name for p in PACKAGE.iterdir()
            if p.is_dir() and (p / "__init__.py").is_file()} - SHARED


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def forbidden_imports() -> list[str]:
    """Every import that breaks the rule, as `file:line: part -> part (name)`."""
    families = _families()
    bad: dict[tuple[str, int, str], str] = {}
    for path in _sources():
        source = _part(path)
        if source in TOP:
            continue
        for name, line in sorted(_imports(path), key=lambda item: len(item[0])):
            target = _target(name)
            if target is None or target == source or target not in families:
                continue  # dlkit itself, its own part, core, data (or a name in dlkit)
            where = (str(path.relative_to(PACKAGE.parent)), line, target)
            bad.setdefault(where, f"{where[0]}:{line}: {source} -> {target} ({name})")
    return [bad[key] for key in sorted(bad)]


def import_matrix() -> dict[str, set[str]]:
    """part -> the parts of dlkit it imports (the top level left out)."""
    matrix: dict[str, set[str]] = defaultdict(set)
    parts = _families() | SHARED
    for path in _sources():
        source = _part(path)
        if source in TOP:
            continue
        for name, _ in _imports(path):
            target = _target(name)
            if target in parts and target != source:
                matrix[source].add(target)
    return matrix


def core_cycles() -> list[list[str]]:
    """The import cycles among the modules of dlkit.core (each a list of module names)."""
    graph: dict[str, set[str]] = {}
    modules = {p.stem for p in (PACKAGE / "core").glob("*.py")}
    for path in (PACKAGE / "core").glob("*.py"):
        graph[path.stem] = {part for name, _ in _imports(path)
                            if name.startswith("dlkit.core.")
                            for part in [name.split(".")[2]]
                            if part in modules and part != path.stem}
    cycles, done = [], set()

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            cycles.append(trail[trail.index(node):] + [node])
            return
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, trail + [node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    return cycles


def test_families_are_siblings() -> None:
    bad = forbidden_imports()
    matrix = import_matrix()
    print("\n".join(f"{part:>17} -> {', '.join(sorted(matrix[part]))}"
                    for part in sorted(matrix)))
    assert not bad, "imports across families (register it in dlkit.core.registry):\n" + \
        "\n".join(bad)
    for shared in SHARED:
        assert matrix[shared] <= SHARED, f"{shared} imports {matrix[shared] - SHARED}"
    assert "data" not in matrix["core"], "core imports data: data is built on core"


def test_core_modules_import_no_cycle() -> None:
    assert core_cycles() == []


def test_registered_targets_exist_in_their_family() -> None:
    """Every `register(kind, name, "module:attribute")` in a family's __init__.py names a
    module of that same family that defines the attribute (checked without importing it)."""
    families = _families()
    seen = 0
    for family in sorted(families):
        text = (PACKAGE / family / "__init__.py").read_text(encoding="utf-8")
        for target in re.findall(r'register\([^)]*?"(dlkit\.[\w.:]+)"\)', text, re.S):
            seen += 1
            module, _, attribute = target.partition(":")
            assert _target(module) == family, f"{family} registers {target} of another part"
            path = PACKAGE.parent.joinpath(*module.split(".")).with_suffix(".py")
            assert path.is_file(), f"{family} registers {target}: no {path}"
            if attribute:
                tree = ast.parse(path.read_text(encoding="utf-8"))
                defined = {node.name for node in tree.body
                           if isinstance(node, ast.FunctionDef | ast.ClassDef)}
                assert attribute in defined, f"{target}: {module} defines no {attribute}"
    assert seen >= 10
