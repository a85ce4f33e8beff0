"""The import graph of ``spml_rs`` and ``annotator``: no cycles, and no import back up the layers.

Every module belongs to one layer (``LAYERS``, matched by the longest prefix) and may
import only the layers listed for it. Imports inside functions count too: a lazy
import is still a dependency a reader must follow. A new module that matches no
prefix fails the test, so its author places it on purpose (``docs/architecture.md``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"spml_rs": ROOT / "src" / "spml_rs", "annotator": ROOT / "annotator"}

#: layer -> module prefixes (the longest matching prefix decides)
LAYERS: dict[str, tuple[str, ...]] = {
    "foundation": (
        "spml_rs.fileio",
        "spml_rs.dataset_info",
        "spml_rs.labels",
        "spml_rs.label_files",
        "spml_rs.results",
        "spml_rs.checkpoint_io",
        "spml_rs.checkpoints",
        "spml_rs.data.classes",
    ),
    "data": ("spml_rs.data",),
    "methods": ("spml_rs.methods",),
    "model": ("spml_rs.models", "spml_rs.heads", "spml_rs.metrics"),
    "callbacks": ("spml_rs.callbacks",),
    "module": ("spml_rs.module",),
    # glue between the layers below: building objects from configs, resuming, process set-up,
    # pretrained-weight adapters that know both the model and the band sets
    "wiring": (
        "spml_rs.builders",
        "spml_rs.resume",
        "spml_rs.run_config",
        "spml_rs.inference",
        "spml_rs.runtime",
        "spml_rs.config_keys",
        "spml_rs.torchgeo_weights",
    ),
    "report": ("spml_rs.report",),
    "entry": (
        "spml_rs.__init__",  # the package itself (its lazy notebook API), see module_layer_name
        "spml_rs.api",
        "spml_rs.train",
        "spml_rs.test",
        "spml_rs.predict",
        "spml_rs.pretrain",
        "spml_rs.prepare",
        "spml_rs.configs",
    ),
    "annotator": ("annotator",),
}
#: layer -> the other layers it may import
ALLOWED: dict[str, set[str]] = {
    "foundation": set(),
    "data": {"foundation"},
    "methods": {"foundation"},
    "model": {"foundation"},
    "callbacks": {"foundation", "methods"},
    "module": {"foundation", "methods", "model"},
    "wiring": {"foundation", "data", "methods", "model", "callbacks", "module"},
    "report": {"foundation"},
    "entry": {"foundation", "data", "methods", "model", "callbacks", "module", "wiring", "report"},
    "annotator": {"foundation", "data"},
}


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the packages."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imported_modules(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """Project modules imported anywhere in ``path`` (module level or inside functions)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = name.split(".")[: len(name.split(".")) - node.level + is_package]
                base = ".".join([*anchor, *([base] if base else [])])
            # ``from pkg import mod`` imports the module pkg.mod when it exists
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {name: set(imported_modules(name, path, known)) for name, path in files.items()}


def layer_of(module: str) -> str:
    # The package is named "spml_rs", a prefix of every module: match it exactly, so that a new
    # module matching no prefix is an error instead of silently joining the entry points.
    module = "spml_rs.__init__" if module == "spml_rs" else module
    best = max(
        ((layer, prefix) for layer, prefixes in LAYERS.items() for prefix in prefixes
         if module == prefix or module.startswith(prefix + ".")),
        key=lambda item: len(item[1]),
        default=None,
    )  # fmt: skip
    assert best is not None, f"{module} is in no layer: add it to LAYERS (and docs/architecture.md)"
    return best[0]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read() -> None:
    edges = graph()
    assert "spml_rs.train" in edges and "spml_rs.builders" in edges["spml_rs.train"]
    assert "spml_rs.fileio" in edges["spml_rs.results"]


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_no_import_back_up_the_layers() -> None:
    violations = [
        f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
        for module, targets in sorted(graph().items())
        for target in sorted(targets)
        if layer_of(target) != layer_of(module)
        and layer_of(target) not in ALLOWED[layer_of(module)]
    ]
    assert violations == []


def test_the_checks_catch_what_they_should() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer_of("spml_rs.data.classes") == "foundation"
    assert layer_of("spml_rs.data.benv2") == "data"
    assert layer_of("spml_rs") == "entry"
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("spml_rs.new_module")
    assert "callbacks" not in ALLOWED["methods"]
