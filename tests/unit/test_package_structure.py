"""Structure rules of the package and tools/, measured: no import cycle (type-only imports under ``if
TYPE_CHECKING:`` and imports inside functions count: each is an edge a reader follows), no ``sys.path`` edit in
tools/ (a package: ``python -m tools.NAME``), no module over 400 lines and no function over 60."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "flamingo_eval"
TOOLS = ROOT / "tools"
ROOTS = ("flamingo_eval", "tools")
"""Top-level names whose modules are in the graph."""


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for the package and tools/ (``tools/x.py`` is ``tools.x``)."""
    out = {}
    for path in [*PACKAGE.rglob("*.py"), *TOOLS.glob("*.py")]:
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = path
    return out


def imports(tree: ast.AST, module: str = "", is_package: bool = False) -> list[str]:
    """Every name imported anywhere in ``module`` (its source parsed as ``tree``): at the top, inside functions
    and under ``if TYPE_CHECKING:`` alike; relative imports made absolute. Plain names, not only ours."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join([*parts, *([base] if base else [])])
            found.extend(f"{base}.{a.name}" for a in node.names)
    return found


def import_graph(sources: Mapping[str, str] | None = None, packages: frozenset[str] = frozenset()
                 ) -> dict[str, set[str]]:
    """Module -> the modules of the graph it imports (``from pkg import name``: the module ``pkg.name`` when it
    is one, else ``pkg``; a package's ``__init__`` counts only when it is what is named).

    ``sources`` (module name -> source text; default: the package and tools/ on disk) and ``packages`` (which
    of them are packages) let the self-tests build a graph from strings. A bare name that is a tools/ module
    (``from bench import x``, the old ``sys.path`` way) counts as ``tools.bench``.
    """
    if sources is None:
        files = modules()
        sources = {m: p.read_text() for m, p in files.items()}
        packages = frozenset(m for m, p in files.items() if p.name == "__init__.py")
    mods = set(sources)
    tools = {m.split(".", 1)[1] for m in mods if m.startswith("tools.")}

    def resolve(name: str) -> str | None:
        if name.split(".")[0] in tools:
            name = f"tools.{name}"
        if name.split(".")[0] not in ROOTS:
            return None
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for m, src in sources.items():
        names = imports(ast.parse(src), m, m in packages)
        graph[m] = {r for r in map(resolve, names) if r is not None} - {m}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_a_cycle_closed_by_a_type_only_or_a_function_level_import_counts():
    a = "from flamingo_eval.b import B\n"
    type_only = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from flamingo_eval.a import A\n"
    in_function = "def f():\n    from flamingo_eval import a\n    return a\n"
    relative = "from .a import A\n"
    for b in (type_only, in_function, relative):
        assert cycles(import_graph({"flamingo_eval.a": a, "flamingo_eval.b": b})) == [
            ["flamingo_eval.a", "flamingo_eval.b"]], b
    assert cycles(import_graph({"flamingo_eval.a": a, "flamingo_eval.b": "import json\n"})) == []


def test_a_cycle_through_tools_counts_whichever_way_a_tool_is_named():
    bench = "from tools.common import timed\n"
    for common in ("def f():\n    from tools.bench import x\n", "def f():\n    from bench import x\n"):
        assert cycles(import_graph({"tools.bench": bench, "tools.common": common})) == [
            ["tools.bench", "tools.common"]], common


def test_the_package_and_tools_have_no_import_cycle():
    graph = import_graph()
    assert "flamingo_eval.results.lines" in graph["flamingo_eval.results.store"]
    assert "flamingo_eval.runner" not in graph["flamingo_eval.results.store"]  # the store knows no runner
    assert any(m.startswith("tools.") for m in graph) and "flamingo_eval.config" in graph["flamingo_eval.task"]
    found = cycles(graph)
    assert not found, ("import cycles (break them along a real seam; type-only and function-level imports "
                       "count): " + "; ".join(" -> ".join(c) for c in found))


def test_tools_edit_no_sys_path():
    """tools/ is a package run as ``python -m tools.NAME`` from the checkout: its modules import each other
    and the package by name, never by putting a folder on ``sys.path``."""
    edits = [f"tools/{p.name}:{line}" for p in sorted(TOOLS.glob("*.py")) for line in sys_path_uses(p.read_text())]
    assert (TOOLS / "__init__.py").is_file() and not edits, f"sys.path used at {edits}"
    assert sys_path_uses("import sys\nsys.path.insert(0, 'x')\n# sys.path in a comment\n") == [2]


def sys_path_uses(src: str) -> list[int]:
    """Lines of ``src`` that touch ``sys.path`` (code, not comments or docstrings)."""
    return [n.lineno for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Attribute) and n.attr == "path"
            and isinstance(n.value, ast.Name) and n.value.id == "sys"]


MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
SIZE_EXEMPT = {
    # Reworked on another branch at the same time (issue 17: the scale bench); split it there, then drop this.
    "tools/bench_scale.py",
}
"""Files measured by :func:`oversized` but not held to the limits, each with the reason."""


def oversized(src: str, name: str) -> list[str]:
    """What in module ``name`` (source ``src``) breaks the size rules: the module over :data:`MAX_MODULE_LINES`
    lines, each function or method over :data:`MAX_FUNCTION_LINES` (``def`` line to last line, decorators not
    counted; nested functions are measured too)."""
    out = []
    n = len(src.splitlines())
    if n > MAX_MODULE_LINES:
        out.append(f"{name}: {n} lines (> {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                out.append(f"{name}:{node.lineno} {node.name}(): {length} lines (> {MAX_FUNCTION_LINES})")
    return out


def test_size_rule_measures_modules_and_methods():
    f = ["def f():"] + [f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES)]  # 61 lines: too long
    m = ["class A:", "    @property", "    def m(self):"]
    m += [f"        y{i} = {i}" for i in range(MAX_FUNCTION_LINES - 1)]  # 60 lines without the decorator: fine
    lines = f + m
    lines += [f"z{i} = 0" for i in range(MAX_MODULE_LINES - len(lines))]  # exactly the module limit
    assert oversized("\n".join(lines), "probe") == [f"probe:1 f(): 61 lines (> {MAX_FUNCTION_LINES})"]  # m: 60
    assert oversized("\n".join([*lines, "w = 1"]), "probe") == [
        f"probe: {MAX_MODULE_LINES + 1} lines (> {MAX_MODULE_LINES})",
        f"probe:1 f(): 61 lines (> {MAX_FUNCTION_LINES})"]


def test_no_module_over_400_lines_and_no_function_over_60():
    files = sorted(PACKAGE.rglob("*.py")) + sorted(TOOLS.glob("*.py"))
    names = {p.relative_to(ROOT).as_posix(): p for p in files}
    assert SIZE_EXEMPT <= set(names), "an exempt file no longer exists: drop it from SIZE_EXEMPT"
    found = [msg for name, p in names.items() if name not in SIZE_EXEMPT for msg in oversized(p.read_text(), name)]
    assert not found, "split along a real seam (CONTRIBUTING.md, 'The rules the tools enforce'):\n" + "\n".join(found)
