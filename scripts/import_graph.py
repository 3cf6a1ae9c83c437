"""The import graph of `distributary`: cycles and imports that point up a layer (ARCHITECTURE.md's layers).

    python scripts/import_graph.py            # figures and the offending edges
    python scripts/import_graph.py --json     # the same, machine-readable
    python scripts/import_graph.py --typing   # also the imports under `if TYPE_CHECKING:`
    python scripts/import_graph.py --root DIR # another checkout's package (e.g. `git archive` of an old commit)

Edges are the imports the interpreter executes (module level and inside functions); imports under
`if TYPE_CHECKING:` are left out (they are for the type checker only). `tests/test_layers.py` uses `analyse()`.
"""
from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "distributary"
WITH_TYPING = False  # --typing: count the imports under `if TYPE_CHECKING:` too

# Layer of each top-level part of the package (ARCHITECTURE.md); a module imports only its layer and below.
LAYERS: dict[str, int] = {
    # L0 leaves
    "errors": 0, "exceptions": 0, "settings": 0, "states": 0, "_registry": 0,
    # L1 data
    "results": 1, "serializers": 1, "cache_policies": 1, "hashing": 1, "transactions": 1, "runs": 1,
    "schemas": 1, "runstore": 1, "context": 1, "logging": 1, "locking": 1, "integrations": 1,
    "schedules": 1,
    # L2 engine, L3 runners
    "engine": 2, "runners": 3,
    # L4 public API (Prefect 3 paths)
    "__init__": 4, "utilities": 4,  # utilities.annotations: Prefect's path for the argument wrappers
    "flows": 4, "tasks": 4, "task_runners": 4, "futures": 4, "artifacts": 4, "variables": 4,
    "client": 4, "runtime": 4, "concurrency": 4,
    # L5 apps
    "cli": 5, "bench": 5, "deployments": 5, "workers": 5, "server": 5, "__main__": 5,
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imports_of(path: Path, mod: str, modules: set[str]) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for each runtime import in the file."""
    is_pkg = path.name == "__init__.py"
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    out: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child) and not WITH_TYPING:
                for n in child.orelse:
                    visit_stmt(n, top)
                continue
            visit_stmt(child, top)

    def visit_stmt(child: ast.AST, top: bool) -> None:
        if isinstance(child, ast.Import):
            for a in child.names:
                if a.name.startswith("distributary"):
                    out.append((resolve(a.name), top))
        elif isinstance(child, ast.ImportFrom):
            if child.level:
                pkg = base[: len(base) - child.level + 1]
                target = ".".join(pkg + ([child.module] if child.module else []))
            else:
                target = child.module or ""
            if not target.startswith("distributary"):
                return
            for a in child.names:
                sub = f"{target}.{a.name}"
                out.append((sub if sub in modules else resolve(target), top))
        else:
            inner = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, top and not inner)

    def resolve(name: str) -> str:
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    visit(ast.parse(path.read_text(), str(path)), True)
    return [(m, top) for m, top in out if m != mod]


def analyse() -> dict[str, object]:
    files = {module_name(p): p for p in sorted(PKG.rglob("*.py")) if "migrations" not in p.parts}
    modules = set(files)
    edges: dict[str, set[str]] = {m: set() for m in modules}
    top_edges: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in files.items():
        for target, top in imports_of(path, mod, modules):
            edges[mod].add(target)
            if top:
                top_edges[mod].add(target)
    upward = sorted((a, b) for a, bs in edges.items() for b in bs
                    if LAYERS.get(part_of(a), 9) < LAYERS.get(part_of(b), 9))
    cycles = [sorted(c) for c in _sccs(edges) if len(c) > 1]
    top_cycles = [sorted(c) for c in _sccs(top_edges) if len(c) > 1]
    unlayered = sorted({part_of(m) for m in modules if part_of(m) not in LAYERS})
    return {"modules": len(modules), "edges": sum(map(len, edges.values())),
            "cycles": sorted(cycles, key=len, reverse=True), "import_time_cycles": top_cycles,
            "upward": upward, "unlayered": unlayered}


def _sccs(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10_000)

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
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
            out.append(comp)

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def main() -> None:
    global PKG, WITH_TYPING
    WITH_TYPING = "--typing" in sys.argv
    if "--root" in sys.argv:
        PKG = Path(sys.argv[sys.argv.index("--root") + 1]).resolve() / "distributary"
    r = analyse()
    if "--json" in sys.argv:
        print(json.dumps(r, indent=1))
        return
    cycles = r["cycles"]
    assert isinstance(cycles, list)
    print(f"modules {r['modules']}, import edges {r['edges']}")
    print(f"cycles (strongly connected groups of modules): {len(cycles)}; sizes {[len(c) for c in cycles]}")
    for c in cycles:
        print("  cycle:", " ".join(c))
    print(f"import-time cycles (module-level imports only): {len(r['import_time_cycles'])}")  # type: ignore[arg-type]
    up = r["upward"]
    assert isinstance(up, list)
    print(f"upward imports (a lower layer importing a higher one): {len(up)}")
    for a, b in up:
        print(f"  {a} -> {b}")
    if r["unlayered"]:
        print("parts with no layer in LAYERS:", r["unlayered"])


if __name__ == "__main__":
    main()
