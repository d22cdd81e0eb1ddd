"""The package's layout: its modules import each other without a cycle, imports inside functions
included (only ``if TYPE_CHECKING:`` blocks are left out), so that every module sits above what it
imports and a lazy import is never a way around a cycle."""

import ast
import graphlib
from pathlib import Path

import vaekit

SOURCE = Path(vaekit.__file__).resolve().parent.parent


def module_names() -> dict[str, Path]:
    """{"vaekit.models.kinds": its path, "vaekit.models": models/__init__.py, ...}."""
    names = {}
    for path in (SOURCE / "vaekit").rglob("*.py"):
        parts = path.relative_to(SOURCE).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imported(tree: ast.Module, modules: dict[str, Path]) -> set[str]:
    """The vaekit modules a module's code imports: ``from a.b import c`` names a.b.c where that is a module, else a.b."""
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for statement in block.body
        for node in ast.walk(statement)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names}
    return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imported(ast.parse(path.read_text()), modules) - {name} for name, path in modules.items()}


def test_the_modules_import_each_other_without_a_cycle():
    graph = import_graph()
    assert len(graph) > 100 and graph["vaekit.settings"] >= {"vaekit.config", "vaekit.models", "vaekit.objectives"}
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as cycle:
        raise AssertionError(f"an import cycle: {' -> '.join(cycle.args[1])}") from None
    assert order.index("vaekit.config") < order.index("vaekit.models") < order.index("vaekit.objectives") < order.index("vaekit.settings")


def test_a_cycle_would_be_found(tmp_path):
    modules = {"vaekit.a": tmp_path / "a.py", "vaekit.b": tmp_path / "b.py", "vaekit.c": tmp_path / "c.py"}
    lazy = ast.parse("def f():\n    from vaekit.b import thing\n")
    typed = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from vaekit.a import Thing\n")
    assert imported(lazy, modules) == {"vaekit.b"} and imported(typed, modules) == set()
    graph = {"vaekit.a": imported(lazy, modules), "vaekit.b": imported(ast.parse("import vaekit.a"), modules), "vaekit.c": set()}
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as cycle:
        assert set(cycle.args[1]) == {"vaekit.a", "vaekit.b"}
    else:
        raise AssertionError("the cycle a -> b -> a went unseen")
