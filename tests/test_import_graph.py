"""The package-level import graph of `workbench`, read from the source with `ast` (issue 10, shown-point 2).

Every `import` / `from ... import` anywhere in a module counts: at module level, inside functions and methods,
and under `if TYPE_CHECKING:`. A function-level import that breaks a cycle at run time is still a cycle in the
design, so it is an edge here. An edge joins two areas: the first name below `workbench` (`workbench.cache.tiers`
is in `cache`, `workbench._types` in `_types`, `workbench/__init__.py` in `workbench`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "workbench"

# No cycle may join two of these, directly or through any other area.
ACYCLIC = ("client", "cache", "metrics", "experiments", "widgets", "charts")
# The core: none of these may reach `widgets`, directly or through any other area.
CORE = ("protocols", "client", "cache", "metrics", "experiments")

Edges = dict[str, dict[str, list[str]]]  # area -> imported area -> ["file:line", ...]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(dotted: str) -> bool:
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imported_modules(source: str, module: str, *, is_package: bool) -> Iterator[tuple[str, int]]:
    """(absolute module name, line) for every import statement anywhere in `source` (a module's text).

    `from X import name` yields `X.name` when that is a module of ours (`from workbench import charts`), else `X`.
    """
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, node.module] if node.module else base_parts)
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield (candidate if _is_module(candidate) else base), node.lineno


def area(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "workbench":
        return None
    return parts[1] if len(parts) > 1 else "workbench"


def build_graph() -> Edges:
    edges: Edges = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        src_area = area(module)
        assert src_area is not None
        edges.setdefault(src_area, {})
        for target, line in imported_modules(
            path.read_text(), module, is_package=path.name == "__init__.py"
        ):
            dst_area = area(target)
            if dst_area is not None and dst_area != src_area:
                edges[src_area].setdefault(dst_area, []).append(f"{path.relative_to(ROOT)}:{line}")
    return edges


def strongly_connected(edges: Edges) -> list[set[str]]:
    """Tarjan's strongly connected components with more than one area (the cycles of the graph)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp: set[str] = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def path_between(edges: Edges, start: str, goal: str) -> list[str] | None:
    """A shortest chain of areas from `start` to `goal` (breadth first), or None."""
    seen = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges.get(v, {})):
                if w not in seen:
                    seen[w] = [*seen[v], w]
                    if w == goal:
                        return seen[w]
                    nxt.append(w)
        frontier = nxt
    return None


def _describe(edges: Edges, chain: list[str]) -> str:
    return "; ".join(f"{a} -> {b} ({', '.join(edges[a][b][:3])})" for a, b in pairwise(chain))


def _cycle_report(edges: Edges, comp: set[str]) -> str:
    guarded = sorted(comp & set(ACYCLIC))
    a, b = guarded[0], guarded[1]
    there, back = path_between(edges, a, b), path_between(edges, b, a)
    assert there is not None and back is not None
    return f"cycle {sorted(comp)}: {_describe(edges, there)} || {_describe(edges, back)}"


@pytest.fixture(scope="module")
def graph() -> Edges:
    return build_graph()


def test_the_graph_sees_module_level_function_level_and_type_checking_imports() -> None:
    """The parser is what the other tests stand on: it must see each kind of import, relative ones too."""
    src = (
        "from typing import TYPE_CHECKING\n"
        "import workbench.metrics.frames\n"
        "from workbench import charts\n"
        "from .. import client\n"
        "from ..view.lane import LaneState\n"
        "if TYPE_CHECKING:\n"
        "    from workbench.experiments.results import RunResult\n"
        "def f():\n"
        "    from workbench.cache import ResponseCache\n"
        "class C:\n"
        "    def m(self):\n"
        "        import workbench.simulator as sim\n"
    )
    found = {m for m, _ in imported_modules(src, "workbench.widgets.dashboard", is_package=False)}
    assert {
        "workbench.metrics.frames",
        "workbench.charts",
        "workbench.client",
        "workbench.view.lane",
        "workbench.experiments.results",
        "workbench.cache",
        "workbench.simulator",
    } <= found
    assert {area(m) for m in found} >= {"metrics", "charts", "client", "view", "experiments", "cache"}


def test_the_graph_has_the_edges_the_code_has(graph: Edges) -> None:
    """Edges we know exist: if these vanish, the walk over the files is broken, not the code fixed."""
    assert "charts" in graph["widgets"]  # widgets/live_charts.py
    assert "experiments" in graph["widgets"]  # widgets/dashboard.py
    assert "metrics" in graph["experiments"]
    assert "protocols" in graph["client"]
    assert set(ACYCLIC) | set(CORE) <= set(graph), sorted(graph)


def test_a_cycle_through_another_area_is_found() -> None:
    """charts -> simulator -> widgets -> charts joins two guarded areas through an unguarded one."""
    edges: Edges = {
        "charts": {"simulator": ["a.py:1"]},
        "simulator": {"widgets": ["b.py:2"]},
        "widgets": {"charts": ["c.py:3"], "metrics": ["d.py:4"]},
        "metrics": {},
    }
    assert strongly_connected(edges) == [{"charts", "simulator", "widgets"}]
    assert "b.py:2" in _cycle_report(edges, {"charts", "simulator", "widgets"})
    assert path_between(edges, "charts", "metrics") == ["charts", "simulator", "widgets", "metrics"]


def test_no_cycle_among_client_cache_metrics_experiments_widgets_charts(graph: Edges) -> None:
    """No cycle joins two of ACYCLIC, directly or through another area."""
    bad = [comp for comp in strongly_connected(graph) if len(comp & set(ACYCLIC)) > 1]
    assert not bad, "\n".join(_cycle_report(graph, comp) for comp in bad)


def test_client_and_cache_do_not_import_each_other(graph: Edges) -> None:
    assert "client" not in graph["cache"], f"cache imports client at {graph['cache'].get('client')}"
    bad = [comp for comp in strongly_connected(graph) if {"client", "cache"} <= comp]
    assert not bad, "\n".join(_cycle_report(graph, comp) for comp in bad)


@pytest.mark.parametrize("core", CORE)
def test_the_core_imports_no_widget(graph: Edges, core: str) -> None:
    chain = path_between(graph, core, "widgets")
    assert chain is None, f"{core} reaches widgets: {_describe(graph, chain)}"
