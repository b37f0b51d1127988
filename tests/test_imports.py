"""The import picture of tfsal, read from the source with `ast`: no circles, and the
directions ARCHITECTURE.md states. Imports inside functions count as much as module-level ones
(a lazy import is still a dependency)."""

import ast
import importlib
from pathlib import Path

import tfsal

ROOT = Path(tfsal.__file__).parent


def _module_names() -> dict[str, Path]:
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


MODULES = _module_names()


def _known(name: str) -> str | None:
    """The tfsal module `name` is, or is inside of (for `from module import function`)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _with_packages(name: str) -> set[str]:
    """A module and the packages above it: importing it runs their `__init__` first."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def _dotted(node) -> str | None:
    """"a.b.c" for the attribute chain a.b.c, else None."""
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(names)]) if isinstance(node, ast.Name) else None


def imported_names(module: str) -> set[str]:
    """Every dotted name a tfsal module imports (`names_imported_by`)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return names_imported_by(path.read_text(), package)


def names_imported_by(source: str, package: str) -> set[str]:
    """Every dotted name the code imports, anywhere in it: `import x.y`, `from x import y`
    (as x and x.y), imports relative to `package`, `importlib.import_module("...")` of a
    constant, dotted attributes (`keras.layers.Conv2D`), and, for the attributes
    `tfsal.<name>` reached through the package's lazy exports, the module defining them."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and _dotted(node.func) in (
                "importlib.import_module", "import_module") and node.args \
                and isinstance(node.args[0], ast.Constant):
            found.add(node.args[0].value)
        elif isinstance(node, ast.Attribute) and _dotted(node) is not None:
            found.add(_dotted(node))
    lazy = {f"tfsal.{name}": target for name, target in tfsal._EXPORTS.items()}
    return {lazy.get(".".join(name.split(".")[:2]), name) for name in found}


def import_graph() -> dict[str, set[str]]:
    """tfsal module -> the tfsal modules (and packages) it imports, without its own packages.
    `tfsal.loading` also imports the catalogues of named models it lists (by name)."""
    graph = {}
    for module in MODULES:
        targets = set()
        for name in imported_names(module):
            known = _known(name) if name.startswith("tfsal") else None
            if known is not None:
                targets |= _with_packages(known)
        if module == "tfsal.loading":
            targets |= set(importlib.import_module("tfsal.loading").CATALOGS)
        graph[module] = targets - _with_packages(module) - {"tfsal"}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
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
    return found


def _path_within(graph, component: list[str]) -> list[str]:
    """One circle through a component, for the failure message."""
    start, members = component[0], set(component)
    path, seen = [start], {start}
    while True:
        nxt = sorted(graph[path[-1]] & members)
        back = [n for n in nxt if n == start]
        if back and len(path) > 1:
            return path + [start]
        fresh = [n for n in nxt if n not in seen]
        if not fresh:
            return path + [nxt[0]]
        path.append(fresh[0])
        seen.add(fresh[0])


def test_the_reader_sees_every_kind_of_import():
    """The scanner itself (else the circle test below would pass on a blind graph)."""
    source = """
import numpy as np
from . import files
from ..errors import TfsalError


def later():
    import tfsal
    from keras import layers
    importlib.import_module("tfsal.zoo")
    return tfsal.vanilla_gradient, keras.layers.Conv2D
"""
    found = names_imported_by(source, "tfsal.metrics")
    assert {"numpy", "tfsal.metrics.files", "tfsal.errors.TfsalError", "tfsal", "keras.layers",
            "tfsal.zoo", "tfsal.methods", "keras.layers.Conv2D"} <= found
    graph = import_graph()
    assert "tfsal.overrides" in graph["tfsal.model"]  # imported inside Model's methods only
    assert {"tfsal.zoo", "tfsal.hub_models"} <= graph["tfsal.loading"]  # its CATALOGS
    # importing a submodule runs the packages above it, except for the importer's own
    assert _with_packages("tfsal.zoo.shapes_cnn") == {"tfsal", "tfsal.zoo", "tfsal.zoo.shapes_cnn"}
    assert "tfsal.metrics" not in graph["tfsal.metrics.deletion"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import circles: " + "; ".join(
        " -> ".join(_path_within(graph, component)) for component in found)


def test_named_models_are_catalogues_that_know_nothing_of_loading():
    """Loading consults the catalogues; they never import loading (nor the adapter)."""
    graph = import_graph()
    for name in tfsal.loading.CATALOGS:
        catalogue = importlib.import_module(name)
        assert isinstance(catalogue.WHAT, str) and isinstance(catalogue.OPTIONS, tuple)
        assert all(callable(getattr(catalogue, f))
                   for f in ("available", "find", "keras_model", "find_handle"))
        below = {m for m in graph if m == name or m.startswith(name + ".")}
        reached = set().union(*(graph[m] for m in below))
        assert not reached & {"tfsal.loading", "tfsal.model"}, name


def _metrics_imports() -> dict[str, set[str]]:
    return {module: imported_names(module) for module in MODULES
            if module.startswith("tfsal.metrics")}


def test_metrics_import_neither_the_zoo_nor_data_nor_keras_layers():
    forbidden = ("tfsal.zoo", "tfsal.data", "keras.layers")
    offending = {module: sorted(name for name in names
                                if any(name == f or name.startswith(f + ".")
                                       for f in forbidden))
                 for module, names in _metrics_imports().items()}
    assert not {m: names for m, names in offending.items() if names}
