"""The package has one direction of import (docs/architecture.md): a module imports its own
unit (top-level module or sub-package) and units on lower layers only, and no import cycle
exists. Imports inside functions count as much as module-level ones."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# unit -> layer; units on one layer are siblings and do not import each other
LAYERS: dict[str, int] = {
    "io": 0, "logger": 0, "schedules": 0, "device": 0, "capabilities": 0, "version": 0,
    "config": 1, "checkpoint": 1, "method_configs": 1,
    "parts": 2, "data": 2, "graphs": 2,
    "backbones": 3, "curation": 3, "evals": 3,
    "methods": 4,
    "runs": 5, "report": 5, "configs": 5,
    "loop": 6,
    "export": 7, "finetune": 7, "pseudo_bow": 7, "sample": 7, "graphs_sweep": 7, "detect": 7,
    "robustness": 7, "viz": 7,
    "cli": 8,
    "": 9,  # the package's __init__: the public API, may import any unit
}  # fmt: skip


def module_names(src: Path, package: str) -> dict[str, Path]:
    return {
        ".".join(p.relative_to(src).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (src / package).rglob("*.py")
    }


def imports(src: Path, package: str) -> list[tuple[str, str, int]]:
    """(importer, imported module, line) for every import of the package by the package,
    module level or inside functions; `from pkg import name` resolves to the deepest module."""
    mods = module_names(src, package)

    def resolve(target: str) -> str | None:
        while target and target not in mods:
            target = target.rpartition(".")[0]
        return target or None

    edges = []
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                base = node.module
                if node.level:  # relative import
                    parts = name.split(".") + ([""] if path.name == "__init__.py" else [])
                    base = ".".join(parts[: len(parts) - node.level] + [node.module])
                targets = [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                r = resolve(t) if t.split(".")[0] == package else None
                if r and r != name and not name.startswith(r + "."):  # own package __init__
                    edges.append((name, r, node.lineno))
    return edges


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_violations(edges: list[tuple[str, str, int]], layers: dict[str, int]) -> list[str]:
    bad = []
    for a, b, line in edges:
        ua, ub = unit(a), unit(b)
        if ua not in layers or ub not in layers:
            bad.append(f"{a}:{line} -> {b}: unit {ua if ua not in layers else ub!r} has no layer")
        elif ua != ub and layers[ub] >= layers[ua]:
            bad.append(f"{a}:{line} -> {b} (layer {layers[ua]} imports layer {layers[ub]})")
    return bad


def cycles(edges: list[tuple[str, str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for a, b, _ in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_import_goes_down_the_layers():
    edges = imports(SRC, "visrep")
    assert len(edges) > 100  # the walk found the package's imports
    assert layer_violations(edges, LAYERS) == []


def test_no_import_cycle():
    assert cycles(imports(SRC, "visrep")) == []


def test_every_unit_has_a_layer():
    units = {unit(m) for m in module_names(SRC, "visrep")}
    assert units <= set(LAYERS), f"give {sorted(units - set(LAYERS))} a layer in LAYERS"


@pytest.fixture
def toy_package(tmp_path):
    """A package with a function-level upward import that closes a cycle."""
    pkg = tmp_path / "toy"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("")
    (pkg / "data" / "a.py").write_text("def f():\n    from toy.train import g\n")
    (pkg / "data" / "b.py").write_text("from .a import f\n")
    (pkg / "train.py").write_text("from toy.data.b import f\n\ndef g():\n    pass\n")
    return tmp_path


def test_the_checks_catch_an_upward_import_and_a_cycle_inside_a_function(toy_package):
    edges = imports(toy_package, "toy")
    assert ("toy.data.b", "toy.data.a", 1) in edges  # relative import resolved
    bad = layer_violations(edges, {"data": 2, "train": 6})
    assert bad == ["toy.data.a:2 -> toy.train (layer 2 imports layer 6)"]
    assert cycles(edges) == [["toy.data.a", "toy.data.b", "toy.train"]]
    assert "no layer" in layer_violations(edges, {"data": 2})[0]
