"""The import graph of ``cortexalign`` holds the layers of DESIGN.md.

Every ``import`` in every module is read with :mod:`ast` — at module level or inside a function,
so a lazy import cannot hide a cycle — and so is every string that names a ``cortexalign`` module
in full (``"cortexalign.bench.runner"``, ``"pkg.mod:attr"``), since the package facade and the
registries import by name. The tests fail on

- a cycle between the top-level packages (``metrics`` -> ``stats`` -> ``metrics``);
- a cycle between the modules of one package (counting every ``import`` statement; a module
  named in a string, as a registry or catalogue entry, is resolved when it is called and is not
  an import);
- an underscore name imported from another package (``from cortexalign.features._extract import x``,
  ``from cortexalign.features import _progress``, ``"cortexalign.bench._run"``);
- a broken layer rule (see ``FORBIDDEN`` and ``REPORTS_MAY_IMPORT``).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "cortexalign"

# package -> packages it must never import (DESIGN.md, "Layer rules").
FORBIDDEN = {
    "stats": {"metrics"},
    "neural": {"metrics"},
    "results": {"metrics", "bench"},
    "models": {"results", "bench"},
    "bench": {"reports"},
    "rdm": {"metrics", "stats", "neural", "bench", "results", "reports", "models", "features"},
}
# reports read the store only: results and the RDM kernel's public names (errors: the shared
# exception types every layer raises).
REPORTS_MAY_IMPORT = {"reports", "results", "rdm", "errors", ""}  # "": cortexalign.__version__

_DOTTED = re.compile(rf"^{ROOT}(\.[A-Za-z_]\w*)+(:[A-Za-z_]\w*)?$")


@dataclass(frozen=True)
class Edge:
    """One import: ``source`` module imports ``target`` module (and maybe ``name`` from it)."""

    source: str
    target: str
    name: str | None
    where: str
    by_name: bool = False  # a string naming the module, resolved when called (not an import)
    typing_only: bool = False  # under ``if TYPE_CHECKING:``: never executed, no runtime cycle

    def __str__(self) -> str:
        what = f"{self.target}.{self.name}" if self.name else self.target
        return f"{self.where}: {self.source} imports {what}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=1)
def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {_module_name(p): p for p in sorted((SRC / ROOT).rglob("*.py"))}


def _resolve(source: str, is_package: bool, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    base = source.split(".") if is_package else source.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _split_target(dotted: str) -> tuple[str, str | None]:
    """``a.b.c`` -> (longest existing module prefix, the attribute after it or None)."""
    known = modules()
    if dotted in known:
        return dotted, None
    head, _, tail = dotted.rpartition(".")
    if head in known:
        return head, tail
    return dotted, None


@lru_cache(maxsize=1)
def edges() -> tuple[Edge, ...]:
    """Every import between ``cortexalign`` modules."""
    found: list[Edge] = []
    for source, path in modules().items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        rel = path.relative_to(SRC)
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                       for stmt in block.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            where = f"{rel}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == ROOT:
                        target, name = _split_target(alias.name)
                        found.append(Edge(source, target, name, where,
                                          typing_only=id(node) in typing_only))
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(source, is_package, node.module, node.level)
                if base.split(".")[0] != ROOT:
                    continue
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    hint = id(node) in typing_only
                    if full in modules():
                        found.append(Edge(source, full, None, where, typing_only=hint))
                    else:
                        found.append(Edge(source, base, alias.name, where, typing_only=hint))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                if _DOTTED.match(node.value):
                    dotted, _, attr = node.value.partition(":")
                    target, name = _split_target(dotted)
                    found.append(Edge(source, target, attr or name, where, by_name=True))
    return tuple(e for e in found if e.target != e.source)


def package(module: str) -> str:
    """The top-level package of a module (``cortexalign.rdm`` -> ``metrics``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _private(dotted: str) -> bool:
    return any(p.startswith("_") and not (p.startswith("__") and p.endswith("__"))
               for p in dotted.split("."))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _explain(components: list[list[str]], key) -> str:
    lines = []
    for component in components:
        members = set(component)
        lines.append(" <-> ".join(component))
        lines += [f"    {e}" for e in edges() if key(e.source) in members and key(e.target) in members
                  and key(e.source) != key(e.target) and not e.by_name]
    return "\n".join(lines)


def test_the_graph_is_read():
    assert len(modules()) > 100
    assert any(package(e.source) == "bench" and package(e.target) == "results" for e in edges())


def test_no_cycle_between_top_level_packages():
    graph: dict[str, set[str]] = {}
    for e in edges():
        a, b = package(e.source), package(e.target)
        if a and b and a != b and not e.by_name and not e.typing_only:
            graph.setdefault(a, set()).add(b)
    components = _cycles(graph)
    assert not components, "import cycles between packages:\n" + _explain(components, package)


def test_no_cycle_between_modules_of_a_package():
    # A package's __init__ re-exports its modules; a module importing its own package's facade
    # is the cycle this test forbids, as is any loop among the modules themselves.
    graph: dict[str, set[str]] = {}
    for e in edges():
        if package(e.source) == package(e.target) and package(e.source) and not e.by_name \
                and not e.typing_only:
            graph.setdefault(e.source, set()).add(e.target)
    components = _cycles(graph)
    assert not components, "import cycles between modules:\n" + _explain(components, str)


def test_no_underscore_name_imported_across_packages():
    bad = [str(e) for e in edges()
           if package(e.source) != package(e.target)
           and (_private(e.target) or (e.name is not None and _private(e.name)))]
    assert not bad, "private names imported from another package:\n" + "\n".join(bad)


@pytest.mark.parametrize("low", sorted(FORBIDDEN))
def test_layer_rules(low):
    bad = [str(e) for e in edges()
           if package(e.source) == low and package(e.target) in FORBIDDEN[low]]
    assert not bad, f"{low} must not import {sorted(FORBIDDEN[low])}:\n" + "\n".join(bad)


def test_reports_read_the_store_only():
    bad = [str(e) for e in edges()
           if package(e.source) == "reports" and package(e.target) not in REPORTS_MAY_IMPORT]
    assert not bad, "reports may import only results and rdm:\n" + "\n".join(bad)


def test_the_checks_catch_what_they_claim(tmp_path):
    # The analysers on a planted graph: a cycle, a private import, a relative import.
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert _private("cortexalign.features._extract") and not _private("cortexalign.__init__")
    assert _resolve("cortexalign.bench._run", False, "_jobs", 1) == "cortexalign.bench._jobs"
    assert _resolve("cortexalign.neural.fmri", True, "_data", 2) == "cortexalign.neural._data"
    assert _DOTTED.match("cortexalign.studies.jalil2026:run")
    assert not _DOTTED.match("see cortexalign.bench._partition_spec.")


def test_the_results_file_name_is_defined_once():
    # results/ owns the name of a results directory's store: everyone else uses RESULTS_FILE
    owner = SRC / ROOT / "results" / "_paths.py"
    bad = []
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value == "results.duckdb" and path != owner:
                bad.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not bad, "write cortexalign.results.RESULTS_FILE, not the literal:\n" + "\n".join(bad)
