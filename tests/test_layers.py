"""The layout tells the architecture: no import cycles, and no package imports one above it.

Layers, lowest first: `edgeops` core (errors, params, settings, console, progress, services) <
`device` (what a device runs: numpy only) < `components` (pure ML; uses the device's
preprocessing and runtimes, written once) < `registry` < `monitoring` < `flows` < `edgeops.cli`.
Imports under `if TYPE_CHECKING:` are annotations, not dependencies, and are not counted.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edgeops", "device", "components", "registry", "monitoring", "flows")
LAYER = {"edgeops": 0, "device": 1, "components": 2, "registry": 3, "monitoring": 4, "flows": 5}
CLI = "edgeops.cli"
# Settings is the composition root: its methods build the clients of the layers above
# (`store()`, `devices()`), importing them inside the method, so nothing runs at import time.
ALLOWED_UPWARD = {("edgeops.settings", "device.store"), ("edgeops.settings", "components.profiles")}


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            name = ".".join(f.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = f
    return mods


def _graph() -> dict[str, set[str]]:
    mods = _modules()

    def resolve(name: str) -> str:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        typing_only = {
            id(sub) for node in ast.walk(tree)
            if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
            for sub in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            for target in targets:
                found = resolve(target)
                if found and found != name and found.split(".")[0] in PACKAGES:
                    graph[name].add(found)
    return graph


def _layer(module: str) -> int:
    return 9 if module == CLI or module.startswith(CLI + ".") else LAYER[module.split(".")[0]]


def test_no_package_imports_a_higher_one() -> None:
    upward = sorted(
        f"{a} -> {b}" for a, targets in _graph().items() for b in targets
        if _layer(b) > _layer(a) and (a, b) not in ALLOWED_UPWARD
    )
    assert upward == []


def test_no_import_cycles() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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

    for module in list(graph):
        if module not in index:
            visit(module)
    assert cycles == []
