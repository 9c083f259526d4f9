"""The package's folders form layers: no folder imports, however indirectly, one that imports it.

Drawn by file path, the tree hides loops, because ``tools/``, ``calibration/`` and ``serving/`` are
installed as ``srice.tools``, ``srice.calibration`` and ``srice.serving`` (pyproject's package-dir).
This scan maps every ``import srice.x`` to the folder that holds it, counts imports made inside
functions too (a lazy import is still a dependency), and looks for a cycle between folders.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPPED = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]


def folder_of_module(module: str) -> str | None:
    """The folder a ``srice...`` module lives in (``srice.tools.yolo`` -> ``tools``), or None."""
    parts = module.split(".")
    if parts[0] != "srice":
        return None
    if len(parts) > 1 and f"srice.{parts[1]}" in MAPPED and MAPPED[f"srice.{parts[1]}"] != "srice":
        return MAPPED[f"srice.{parts[1]}"]
    if len(parts) > 1 and (ROOT / "srice" / parts[1]).is_dir():
        return f"srice/{parts[1]}"
    return "srice:" + (parts[1] if len(parts) > 1 else "__init__")  # a top-level module: its own node


def folder_of_file(path: Path) -> str:
    rel = path.relative_to(ROOT)
    if rel.parts[0] != "srice":
        return rel.parts[0]
    return f"srice/{rel.parts[1]}" if len(rel.parts) > 2 else f"srice:{path.stem}"


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # "from srice import tools"
    return found


def folder_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for top in ("srice", *(v for v in MAPPED.values() if v != "srice")):
        for path in (ROOT / top).rglob("*.py"):
            here = folder_of_file(path)
            for module in imports(path):
                there = folder_of_module(module)
                if there and there != here:
                    graph.setdefault(here, set()).add(there)
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return None
        for nxt in sorted(graph.get(node, ())):
            found = visit(nxt, path + [node])
            if found:
                return found
        done.add(node)
        return None

    for node in sorted(graph):
        found = visit(node, [])
        if found:
            return found
    return None


def test_the_folders_form_a_dag():
    found = cycle(folder_graph())
    assert found is None, "an import loop between folders: " + " -> ".join(found)


def test_the_scan_sees_the_mapped_folders_and_lazy_imports(tmp_path):
    """The scan itself: mapped names land in their folders, and a loop made of a lazy import is found."""
    assert folder_of_module("srice.tools.yolo") == "tools"
    assert folder_of_module("srice.calibration") == "calibration"
    assert folder_of_module("srice.agent.loop") == "srice/agent"
    assert folder_of_module("srice.errors") == "srice:errors"
    graph = folder_graph()
    assert "serving" in graph["srice/agent"] and "tools" in graph["calibration"]
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    lazy = tmp_path / "m.py"
    lazy.write_text("def f():\n    from srice.agent.loop import Agent\n")
    assert "srice.agent.loop" in imports(lazy)


def test_no_lazy_name_shadows_a_submodule_of_its_package():
    """A package's lazily imported name that is also one of its submodules' names (``register`` the
    function and ``register.py``) turns into the module as soon as the submodule is imported anywhere:
    ``from srice.compress import register`` then gives a module, not the function."""
    import importlib

    for name in (
        "srice",
        "srice.agent",
        "srice.builder",
        "srice.serving",
        "srice.compress",
        "srice.calibration",
    ):
        package = importlib.import_module(name)
        folder = Path(package.__file__).parent
        clashes = [
            n for n in getattr(package, "_LAZY", {}) if (folder / f"{n}.py").exists() or (folder / n).is_dir()
        ]
        assert not clashes, f"{name}: lazy names that are also submodules: {clashes}"
