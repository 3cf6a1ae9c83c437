"""The layer rules of ARCHITECTURE.md over the runtime import graph (scripts/import_graph.py prints it):
imports point down, and at most one import cycle remains in code that is not being rewritten."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
assert _spec is not None and _spec.loader is not None
graph = importlib.util.module_from_spec(_spec)
sys.modules["import_graph"] = graph
_spec.loader.exec_module(graph)

D = "distributary."
# No upward import is left: the run store registers its sink through `runs.sink_hub()` (the transitions install
# themselves there), and `utilities.annotations` is a Prefect module path of the public API (L4).
KNOWN_UPWARD: set[tuple[str, str]] = set()
# The one cycle left (a function-level import between the result store and its refs).
ALLOWED_CYCLE = [D + "results.refs", D + "results.store"]


def test_every_part_of_the_package_has_a_layer():
    assert graph.analyse()["unlayered"] == []


def test_imports_point_down():
    upward = {tuple(e) for e in graph.analyse()["upward"]}
    new = sorted(upward - KNOWN_UPWARD)
    assert not new, f"imports from a lower layer into a higher one (ARCHITECTURE.md): {new}"


def test_engine_imports_nothing_above_it_at_import_time():
    files = {graph.module_name(p): p for p in graph.PKG.rglob("*.py")}
    modules = set(files)
    for mod, path in files.items():
        if not mod.startswith(D + "engine"):
            continue
        for target, top in graph.imports_of(path, mod, modules):
            layer = graph.LAYERS.get(graph.part_of(target), 9)
            assert not (top and layer > 2), f"{mod} imports {target} (layer {layer}) at module level"


def test_at_most_one_import_cycle():
    cycles = graph.analyse()["cycles"]
    assert graph.analyse()["import_time_cycles"] == []
    rest = [c for c in cycles if c != ALLOWED_CYCLE]
    assert rest == [], f"import cycles besides results.refs <-> results.store: {rest}"
