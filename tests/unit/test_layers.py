"""Layers point one way: cli -> reporting and worlds -> methods and scorers -> core. Every import of every module
(module level or inside a function) is read with ast; an import that points up, or a cycle, fails.

The core reaches methods, scorers and worlds only through the registries, by name: its source names no world and
no scorer."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"bench": ROOT / "bench", "bench.methods": ROOT / "methods", "bench.evaluations": ROOT / "evaluations"}
CORE = {"bench", "bench.errors", "bench.config", "bench.registry", "bench.models", "bench.sampling", "bench.trainer",
        "bench.results", "bench.checkpoint", "bench.dist", "bench.timing", "bench.buffer", "bench.value",
        "bench.stats", "bench.scoring", "bench.method", "bench.world", "bench.prompts", "bench.policy"}  # fmt: skip
REPORTING = {"bench.evaluations.runs", "bench.evaluations.tables", "bench.evaluations.plots",
             "bench.evaluations.report", "bench.evaluations.standing", "bench.evaluate", "bench.evalcache",
             "bench.resolve", "bench.clitools"}  # fmt: skip
CLI = {"bench.cli", "bench.sweep", "bench.paper", "bench.perf", "bench.perf_sd", "bench.perf_report"}
WORLDS = ("bench.shapes", "bench.sd")
LAYER_NAMES = {1: "core", 2: "methods and scorers", 3: "worlds and reporting", 4: "cli"}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            if package == "bench" and parts and parts[0] in ("methods", "evaluations"):
                continue  # bench/ has no such folders; the packages are mapped from methods/ and evaluations/
            found[".".join([package, *parts])] = path
    return found


def layer(module: str) -> int:
    if module in CORE:
        return 1
    if module in CLI:
        return 4
    if module in REPORTING or module.startswith(WORLDS):
        return 3
    if module.startswith(("bench.methods", "bench.evaluations")):
        return 2
    raise AssertionError(f"{module} is in no layer: add it to one in tests/unit/test_layers.py")


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    out = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in known:  # bench.shapes.grammar.parse -> bench.shapes.grammar
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


GRAPH = {m: imports(m, p, set(modules())) for m, p in modules().items()}


def test_every_module_has_a_layer():
    for module in GRAPH:
        layer(module)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down(module):
    up = [t for t in GRAPH[module] if layer(t) > layer(module)]
    assert not up, f"{module} ({LAYER_NAMES[layer(module)]}) imports {up} from a higher layer"


def test_worlds_do_not_import_each_other():
    for module, targets in GRAPH.items():
        for world in WORLDS:
            if module.startswith(world):
                others = [t for t in targets if t.startswith(WORLDS) and not t.startswith(world)]
                assert not others, f"{module} imports another world: {others}"


def test_no_cycles():
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(GRAPH[node]):
            if nxt == "bench" or node == "bench":
                continue  # the package root re-exports nothing of its children
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(nxt) :] + [nxt]))
            if not state.get(nxt):
                visit(nxt, trail + [nxt])
        state[node] = 2

    for module in sorted(GRAPH):
        if not state.get(module):
            visit(module, [module])


def test_the_core_names_no_world_and_no_scorer():
    from bench.registry import SCORERS, WORLDS

    words = set(SCORERS.names()) | set(WORLDS.names()) - {"sd"}  # "sd" is too short to grep; its name is tested below
    for module in sorted(CORE):
        text = modules()[module].read_text().lower()
        found = sorted(w for w in words if w in text)
        assert not found, f"{module} names {found}: the core reaches plugins by registry name only"
        assert "bench.sd" not in text and "bench.shapes" not in text
