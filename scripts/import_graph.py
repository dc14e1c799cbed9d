"""The package's import graph, read from the source with ``ast`` (nothing is imported): which of our modules import
which, the cycles, the imports that go up a layer, and the imports made inside functions.

    python scripts/import_graph.py            # summary: layers, upward imports, cycles, function-level imports
    python scripts/import_graph.py --edges    # every edge, one per line (module -> module)
    python scripts/import_graph.py --check    # exit 1 when there is a cycle, an upward import or an undeclared
                                              # function-level import (tests/test_layout.py runs this)

Layers, lowest first (a module may import its own layer or lower ones only):
  basics   errors, checks, devices, images, prediction (resizing rules, top-k rows), files, safe_yaml, renames,
           runs, weights_io (checkpoint files as bytes)
  domain   models, data, lit, evaluation, figures, callbacks, logger (the TensorBoard logger)
  entry    cli, stages, checkpoints (rebuilding objects from a file), predict, inference, export, serve, viz, sweep,
           scrape, results (the records behind docs/results.md), __main__
A function-level import of our own modules is allowed only where the line carries a ``# deferred:`` comment
saying why (a heavy optional dependency, e.g. matplotlib or timm, kept out of start-up).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "cifar_pl"

# the first component after ``cifar_pl.`` (or the module itself) -> layer
LAYERS: dict[str, int] = {
    **dict.fromkeys(
        [
            "errors",
            "checks",
            "devices",
            "images",
            "prediction",
            "files",
            "safe_yaml",
            "renames",
            "runs",
            "weights_io",
        ],
        0,
    ),
    **dict.fromkeys(["models", "data", "lit", "evaluation", "figures", "callbacks", "logger"], 1),
    **dict.fromkeys(
        [
            "cli",
            "stages",
            "checkpoints",
            "predict",
            "inference",
            "export",
            "serve",
            "viz",
            "sweep",
            "sweeps",
            "scrape",
            "results",
            "__main__",
            "__init__",
        ],
        2,
    ),
}
LAYER_NAMES = ("basics", "domain", "entry")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> int:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else "__init__"
    if key not in LAYERS:
        raise SystemExit(f"{module}: no layer assigned; add it to LAYERS in scripts/import_graph.py")
    return LAYERS[key]


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        keep = len(parts) - node.level + (1 if is_package else 0)
        base = ".".join(parts[:keep] + ([node.module] if node.module else []))
    if not base.startswith(PACKAGE):
        return []
    # ``from .x import y`` may name a submodule y of package x: count it as that submodule when it exists
    targets = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        path = ROOT / Path(*sub.split("."))
        targets.append(sub if path.with_suffix(".py").exists() or (path / "__init__.py").exists() else base)
    return targets


class _Visitor(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, lines: list[str]):
        self.module, self.is_package, self.lines = module, is_package, lines
        self.depth = 0
        self.edges: list[tuple[str, int, bool, bool]] = []  # target, line, in a function, declared deferred

    def _add(self, targets: list[str], node: ast.stmt) -> None:
        text = self.lines[node.lineno - 1]
        for t in targets:
            self.edges.append((t, node.lineno, self.depth > 0, "# deferred:" in text))

    def visit_FunctionDef(self, node):  # noqa: N802
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815

    def visit_If(self, node):  # noqa: N802
        # ``if TYPE_CHECKING:`` imports are for annotations only: not an import at run time
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node):  # noqa: N802
        self._add([a.name for a in node.names if a.name.startswith(PACKAGE)], node)

    def visit_ImportFrom(self, node):  # noqa: N802
        self._add(_resolve(self.module, self.is_package, node), node)


def read_graph() -> dict[str, list[tuple[str, int, bool, bool]]]:
    graph = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        module = module_name(path)
        source = path.read_text()
        visitor = _Visitor(module, path.name == "__init__.py", source.splitlines())
        visitor.visit(ast.parse(source))
        graph[module] = [e for e in visitor.edges if e[0] != module]
    return graph


def cycles(graph: dict[str, list[tuple[str, int, bool, bool]]], deferred: bool = True) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), over every import (``deferred=False``:
    module-level imports only, the ones that can break loading)."""
    adj = defaultdict(set)
    for src, edges in graph.items():
        for dst, _, in_function, _ in edges:
            if (deferred or not in_function) and dst in graph and not _is_parent(dst, src):
                adj[src].add(dst)
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(adj[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
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

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def _is_parent(package: str, module: str) -> bool:
    # a module importing its own package's __init__ (``from . import x``) is how Python loads it anyway
    return module.startswith(package + ".")


def problems(graph) -> dict[str, list[str]]:
    upward, undeclared = [], []
    for src, edges in graph.items():
        for dst, line, in_function, declared in edges:
            if dst not in graph or _is_parent(dst, src):
                continue
            if layer_of(dst) > layer_of(src):
                upward.append(
                    f"{src}:{line} -> {dst} ({LAYER_NAMES[layer_of(src)]} imports {LAYER_NAMES[layer_of(dst)]})"
                )
            if in_function and not declared:
                undeclared.append(f"{src}:{line} -> {dst} (inside a function, no '# deferred:' reason)")
    return {
        "cycles": [" <-> ".join(c) for c in cycles(graph)],
        "cycles at load time": [" <-> ".join(c) for c in cycles(graph, deferred=False)],
        "upward imports": upward,
        "undeclared function-level imports": undeclared,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--edges", action="store_true", help="print every edge")
    p.add_argument("--check", action="store_true", help="exit 1 on a cycle, upward or undeclared import")
    a = p.parse_args(argv)
    graph = read_graph()
    if a.edges:
        for src, edges in graph.items():
            for dst, line, in_function, _ in edges:
                print(f"{src} -> {dst}{' (in a function)' if in_function else ''}  [line {line}]")
        return 0
    n_edges = sum(len({e[0] for e in edges}) for edges in graph.values())
    print(f"{len(graph)} modules, {n_edges} module-to-module imports")
    for layer, name in enumerate(LAYER_NAMES):
        members = sorted({m.split(".")[1] if "." in m else m for m in graph if layer_of(m) == layer})
        print(f"  {name}: {', '.join(members)}")
    found = problems(graph)
    for title, items in found.items():
        print(f"{title}: {len(items)}")
        for item in items:
            print(f"  {item}")
    return 1 if a.check and any(found.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
