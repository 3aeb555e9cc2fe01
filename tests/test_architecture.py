"""The layering of the apps, read from the source with ``ast`` (imports inside functions
included): no import cycle among the modules of dpp, tenants, billing and runs, and every import
points down the layers runs -> billing -> tenants -> dpp, except the written-down exceptions."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAYERS = {"dpp": 0, "tenants": 1, "billing": 2, "runs": 3}  # an app may import its own layer and those below

# Upward imports that are allowed, each with its reason (docs/ARCHITECTURE.md lists them too).
ALLOWED_UPWARD = {
    # A tenant is created with its wallet and ledger accounts in one transaction; the wallet is
    # billing's (its models point at Tenant), so tenants' create service calls billing's opener.
    ("tenants.services", "billing.services"),
    # Operator commands are entry points: create_tenant --topup-usd and seed_demo fund the tenant
    # they create, in the same transaction, through billing's services.
    ("tenants.management.commands.create_tenant", "billing.money"),
    ("tenants.management.commands.create_tenant", "billing.services"),
    ("tenants.management.commands.seed_demo", "billing.selectors"),
    ("tenants.management.commands.seed_demo", "billing.services"),
}


def project_modules() -> dict[str, Path]:
    modules = {}
    for app in LAYERS:
        for path in (REPO / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def _resolve(target: str, modules: dict[str, Path]) -> str | None:
    """The project module an import names (``a.b.c`` may be a name inside module ``a.b``)."""
    while target:
        if target in modules:
            return target
        target = target.rpartition(".")[0]
    return None


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):  # every nesting level
            if isinstance(node, ast.Import):
                targets.update(_resolve(alias.name, modules) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}" if base else anchor
                for alias in node.names:
                    targets.add(_resolve(f"{base}.{alias.name}", modules) or _resolve(base, modules))
        graph[name] = {target for target in targets if target and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def upward_imports(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    layer = lambda module: LAYERS[module.partition(".")[0]]  # noqa: E731
    return {(source, target) for source, targets in graph.items() for target in targets
            if layer(target) > layer(source)}


GRAPH = import_graph(project_modules())


class TestImportGraph:
    def test_reads_every_app_and_sees_imports_inside_functions(self):
        assert {"dpp.settings", "tenants.services", "billing.services", "runs.services.submit"} <= set(GRAPH)
        # runs/apps.py imports runs.schedule inside its post_migrate handler only.
        assert "runs.schedule" in GRAPH["runs.apps"]

    def test_finds_a_cycle_and_an_upward_import_when_there_is_one(self):
        graph = {"billing.a": {"runs.b"}, "runs.b": {"runs.c"}, "runs.c": {"runs.b"}}

        assert cycles(graph) == [["runs.b", "runs.c"]]
        assert upward_imports(graph) == {("billing.a", "runs.b")}


class TestLayering:
    def test_there_is_no_import_cycle_among_the_modules(self):
        assert cycles(GRAPH) == []

    def test_imports_point_down_the_layers_except_the_written_down_exceptions(self):
        assert upward_imports(GRAPH) - ALLOWED_UPWARD == set()

    def test_every_written_down_exception_is_still_needed(self):
        assert ALLOWED_UPWARD - upward_imports(GRAPH) == set()
