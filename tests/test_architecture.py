"""The package's layering: no import cycle, a core that stands alone, a light ``import minikto``.

The imports are read from the source with :mod:`ast` (every ``import`` and ``from ... import``,
those inside functions too: a lazy import that closes a circle is still a circle). Importing
``a.b.c`` from ``a.x`` also runs the package ``a.b``'s ``__init__``, so that counts as an edge.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import minikto

PACKAGE = Path(minikto.__file__).parent

#: The top-level math modules and ``fast/``: the core a student reads.
CORE = (
    "minikto.backend",
    "minikto.features",
    "minikto.policy",
    "minikto.params",
    "minikto.token_batch",
    "minikto.kto",
    "minikto.losses",
    "minikto.pairwise",
    "minikto.bco",
    "minikto.reference_free",
    "minikto.halo",
    "minikto.exact",
    "minikto.objective",
    "minikto.gradcheck",
    "minikto._checks",
    "minikto._token_checks",
    "minikto.fast",
)
#: What the core must not import.
OUTSIDE_THE_CORE = ("minikto.data", "minikto.training", "minikto.tools", "minikto.experiments")

#: Known cycles, each closed by one edge, allowed for now (none: keep it that way).
KNOWN_CYCLE_EDGES: set[tuple[str, str]] = set()


def _modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the package: dotted name -> (file, is a package ``__init__``)."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports (with the packages those run)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:  # a submodule, or a name of the module `source`
                    sub = f"{source}.{alias.name}"
                    targets.add(sub if sub in modules else source)
        edges = set()
        mine = set(_ancestors(name))
        for target in targets:
            if target not in modules:
                continue
            edges.add(target)
            edges.update(a for a in _ancestors(target) if a not in mine and a in modules)
        edges.discard(name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_import_graph_reader_finds_a_cycle_when_there_is_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    edges = import_graph()
    # a relative import of a submodule points at that module, not at the package
    assert "minikto._checks" in edges["minikto.kto"] and "minikto" not in edges["minikto.kto"]
    assert "minikto.fast.blocks" in edges["minikto.policy"]


def test_there_is_no_import_cycle_in_the_package():
    graph = import_graph()
    for source, target in KNOWN_CYCLE_EDGES:
        graph.get(source, set()).discard(target)
    found = cycles(graph)
    report = "\n".join(" <-> ".join(c) for c in found)
    assert found == [], f"import cycles in minikto/:\n{report}"


def test_the_core_imports_nothing_from_data_training_tools_or_experiments():
    graph = import_graph()
    core = [m for m in graph if m.startswith(CORE)]
    assert "minikto.fast.blocks" in core and "minikto.policy" in core
    leaks = {m: sorted(t for t in graph[m] if t.startswith(OUTSIDE_THE_CORE)) for m in core}
    leaks = {m: t for m, t in leaks.items() if t}
    assert leaks == {}, f"the core imports outside itself: {leaks}"


def test_import_minikto_loads_no_plotting_progress_yaml_or_experiments():
    code = (
        "import sys, minikto\n"
        "heavy = ('matplotlib', 'tqdm', 'yaml', 'minikto.experiments')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout
