"""The layering the architecture promises, held by reading every import in `src/tars`.

    domain ← storage / bus ← services (auth among them) ← api / worker / analysis services ← wiring ← cli

A package may import its own modules and the layers below its own, never above or beside (except
the pairs named in SIDEWAYS). Concrete implementations (Redis or in-process, PostgreSQL or SQLite
readers, a remote recorder) are chosen by `tars.wiring` alone; everything else sees their
interfaces. Imports under `if TYPE_CHECKING:` count: a type is an arrow too.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Lower layers first. Cross-cutting leaves (settings, tracing, metrics) sit just above the domain:
# anyone may read settings, open a span or count something; they know nothing of the rest.
LAYERS: list[set[str]] = [
    {"domain", "version"},
    {"settings", "tracing", "metrics"},
    {"storage", "bus", "training"},
    {"services"},
    {"api", "worker", "client", "insight", "adaptive", "consensus"},
    {"wiring"},
    {"cli", "__main__"},
]
# Same-layer arrows that are allowed (one way only: the reverse would be a cycle).
# The insight-engine service serves /health and /metrics as the API services do, with their routes.
SIDEWAYS = {("tracing", "metrics"), ("__main__", "cli"), ("insight", "api")}
# Services are the only door to these: nothing above the services layer reaches them but wiring.
BEHIND_SERVICES = {"storage", "bus"}
SERVICES_LAYER = 3

# Modules that are one of several interchangeable implementations: only wiring builds them.
CONCRETE = {
    "tars.bus.memory",
    "tars.bus.redis_streams",
    "tars.bus.memory_leases",
    "tars.bus.redis_leases",
    "tars.services.auth.invalidations_file",
    "tars.services.auth.invalidations_redis",
    "tars.worker.remote",
    "tars.storage.evaluation_store_postgres",
    "tars.storage.evaluation_store_sync",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "tars")
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: -node.level or None] if path.name != "__init__.py" else module.split(".")
                if path.name == "__init__.py" and node.level > 1:
                    base = base[: -(node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] != "tars":
                continue
            found.add(target)
            # `from tars.bus import memory` imports the module tars.bus.memory
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in (SRC / "tars").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        graph[module] = {target for target in _imports(path, module) if target in modules}
    return graph


def _allowed(here: str, there: str) -> bool:
    if here == there:
        return True
    if there in BEHIND_SERVICES and _layer(here) > SERVICES_LAYER and here != "wiring":
        return False
    return _layer(there) < _layer(here) or (here, there) in SIDEWAYS


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "tars"


def _layer(package: str) -> int:
    for index, members in enumerate(LAYERS):
        if package in members:
            return index
    raise AssertionError(f"tars.{package} is in no layer: add it to LAYERS in {__file__}")


GRAPH = _graph()


def _violations() -> set[tuple[str, str]]:
    found = set()
    for source, targets in GRAPH.items():
        here = _package(source)
        if here == "tars":  # the package itself: its version only
            continue
        for target in targets:
            there = _package(target)
            if there in (here, "tars"):
                continue
            if not _allowed(here, there):
                found.add((source, target))
    return found


def test_every_package_is_in_a_layer() -> None:
    for module in GRAPH:
        if _package(module) != "tars":
            _layer(_package(module))


def _concrete_imports() -> set[tuple[str, str]]:
    return {
        (source, target)
        for source, targets in GRAPH.items()
        for target in targets & CONCRETE
        if _package(source) != "wiring" and source.rsplit(".", 1)[0] != target.rsplit(".", 1)[0]
    }


def test_imports_flow_down_the_layers() -> None:
    found = sorted(_violations())
    assert not found, "imports against the layering:\n" + "\n".join(f"  {a} -> {b}" for a, b in found)


def test_only_wiring_builds_concrete_implementations() -> None:
    offenders = sorted(_concrete_imports())
    assert not offenders, "only tars.wiring may import these:\n" + "\n".join(f"  {a} -> {b}" for a, b in offenders)


def test_packages_form_no_cycle() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for source, targets in GRAPH.items():
        for target in targets:
            if _package(source) != _package(target):
                edges[_package(source)].add(_package(target))
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path[path.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])


@pytest.mark.parametrize(
    ("source", "target", "broken"),
    [
        ("tars.api.routes.x", "tars.storage.evaluations", True),
        ("tars.storage.x", "tars.services.evaluations", True),
        ("tars.bus.x", "tars.storage.tables", True),
        ("tars.services.x", "tars.storage.evaluations", False),
        ("tars.cli.x", "tars.wiring", False),
        ("tars.cli.x", "tars.storage.database", True),
        ("tars.wiring.x", "tars.bus.redis_streams", False),
        ("tars.worker.x", "tars.bus.base", True),
        ("tars.tracing.x", "tars.metrics.catalogue", False),
        ("tars.metrics.x", "tars.tracing", True),
    ],
)
def test_the_rule_itself(source: str, target: str, broken: bool) -> None:
    assert _allowed(_package(source), _package(target)) is not broken
