"""One extraction loop (issue 16): only ``features/_loop.py::run_batches`` (its inner ``run``, the
loop the out-of-memory retry restarts) iterates over stimulus batches calling a model.

Read with :mod:`ast`: a loop (``for``/``while``, in any module of the package) is a per-batch
extraction loop when what it iterates over names the stimuli (``stimuli``, ``images``, a
``StimulusSet``'s batches: ``iter_batches``) and its body calls a forward pass
(``forward_layers``, ``attention_maps``, a feature kind's ``batch``, a module called directly
as ``*.module(...)``, or a function of the same module that does). A second such loop fails the test, naming its place; the detector is
checked on planted snippets so the test can fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "cortexalign"
THE_LOOP = ("features/_loop.py", "run_batches.run")
FORWARD_ATTRS = {"forward_layers", "attention_maps", "batch", "module"}
FORWARD_NAMES = {"attention_maps"}
STIMULUS_WORDS = ("stimul", "images", "iter_batches")


def _names(node: ast.AST) -> list[str]:
    out = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            out.append(sub.id)
        elif isinstance(sub, ast.Attribute):
            out.append(sub.attr)
    return out


def _calls(nodes: list[ast.AST], attrs: set[str], names: set[str]) -> bool:
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call):
                func = sub.func
                if isinstance(func, ast.Attribute) and func.attr in attrs:
                    return True
                if isinstance(func, ast.Name) and func.id in names:
                    return True
    return False


def _forward_helpers(tree: ast.Module) -> set[str]:
    """Names of the module's functions (nested ones too) that call a forward pass, directly or
    through another such function: calling one from a loop counts as calling the model."""
    defs = [d for d in ast.walk(tree) if isinstance(d, (ast.FunctionDef, ast.AsyncFunctionDef))]
    helpers: set[str] = set()
    while True:
        more = {d.name for d in defs if d.name not in helpers and _calls(
            d.body, FORWARD_ATTRS | helpers, FORWARD_NAMES | helpers)}
        if not more:
            return helpers
        helpers |= more


def extraction_loops(source: str, where: str) -> list[tuple[str, str]]:
    """(where, enclosing function as ``outer.inner``) of every per-batch extraction loop in
    ``source``."""
    tree = ast.parse(source)
    helpers = _forward_helpers(tree)
    found = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = function
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = child.name if function == "<module>" else f"{function}.{child.name}"
            if isinstance(child, (ast.For, ast.AsyncFor, ast.While)):
                over = child.test if isinstance(child, ast.While) else child.iter
                names = [n.lower() for n in _names(over)]
                if any(w in n for n in names for w in STIMULUS_WORDS) and _calls(
                        child.body, FORWARD_ATTRS | helpers, FORWARD_NAMES | helpers):
                    found.append((where, function))
            visit(child, name)

    visit(tree, "<module>")
    return found


def test_only_the_one_loop_iterates_over_stimulus_batches_calling_a_model():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        found += extraction_loops(path.read_text(), path.relative_to(SRC).as_posix())
    assert found == [THE_LOOP], (
        f"per-batch extraction loops outside {THE_LOOP}: "
        f"{[f for f in found if f != THE_LOOP]}; add a feature kind "
        "(features.FEATURE_KINDS) and call features.extract instead")


@pytest.mark.parametrize("source,loops", [
    ("def f(adapter, stimuli, bs):\n"
     "    for start in range(0, len(stimuli), bs):\n"
     "        x = adapter.preprocess([stimuli.image(i) for i in range(start, start + bs)])\n"
     "        acts = adapter.forward_layers(x, ['a'])\n", 1),
    ("def g(model, images):\n"
     "    for x in images:\n"
     "        out = attention_maps(model.module, x)\n", 1),
    ("def h(kind, adapter, batches, stimuli):\n"
     "    for x in iter_batches(stimuli, 8, prep):\n"
     "        kind.batch(adapter, x, [], {})\n", 1),
    ("def k(adapter, stimuli):\n"
     "    i = 0\n"
     "    while i < len(stimuli):\n"
     "        adapter.module(stimuli.image(i))\n"
     "        i += 1\n", 1),
    # not extraction loops: no forward pass, or not over the stimuli
    ("def a(stimuli):\n    for i in range(len(stimuli)):\n        print(stimuli.image(i))\n", 0),
    ("def b(adapter, layers):\n    for n in layers:\n        adapter.forward_layers(x, [n])\n", 0),
    # through a helper of the module (nested or not) that calls the model
    ("def c(adapter, stimuli):\n"
     "    def maps_of(idx):\n"
     "        return feat.batch(adapter, x, idx)\n"
     "    def twice(idx):\n"
     "        return maps_of(idx)\n"
     "    for start in range(0, len(stimuli), 8):\n"
     "        twice(range(start, start + 8))\n", 1),
])
def test_the_detector_finds_planted_loops(source, loops):
    assert len(extraction_loops(source, "planted.py")) == loops
