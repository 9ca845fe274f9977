"""The shape of the code holds as it grows (issue 22): a reader finds each stage in its place because the layers
hold. Read from the source (ast), so the tests see imports inside functions too, where circles like to hide."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"cloudlora": ROOT / "extension", "cloudlora_backend": ROOT / "cloud_backend"}
MAX_LINES = 400
LIFECYCLE = ("service", "actions", "follow", "status", "job_store", "records", "spec")


def modules() -> dict[str, Path]:
    out = {}
    for pkg, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([pkg, *parts])] = path
    return out


def imports(name: str, path: Path, mods: dict[str, Path]) -> list[tuple[str, str | None, int]]:
    """(module imported, name taken from it or None, line) for every import of a project module in the file."""
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else (node.module or "")
            for alias in node.names:
                if f"{base}.{alias.name}" in mods:
                    found.append((f"{base}.{alias.name}", None, node.lineno))
                elif base in mods:
                    found.append((base, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names if alias.name in mods]
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_another_that_imports_it_back_even_inside_a_function():
    mods = modules()
    graph = {name: {target for target, _, _ in imports(name, path, mods) if target != name}
             for name, path in mods.items()}
    assert circles(graph) == []


def test_no_module_takes_a_private_name_from_another():
    mods = modules()
    crossing = [f"{path.relative_to(ROOT)}:{line} imports {attr} from {target}"
                for name, path in mods.items() for target, attr, line in imports(name, path, mods)
                if attr and attr.startswith("_") and not attr.startswith("__") and target != name]
    assert crossing == []


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in modules().values()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_the_job_lifecycle_reaches_a_backend_only_through_its_interface():
    """service, actions, follow and status call backends.of(name).<function>; the modules that do a backend's work
    (local.py, sagemaker.py) are that backend's own business."""
    mods = modules()
    working = {"cloudlora.jobs.local_backend.local", "cloudlora.jobs.sagemaker_backend.sagemaker"}
    reached = [f"{mods[f'cloudlora.jobs.{m}'].name}:{line} imports {target}" for m in LIFECYCLE
               for target, _, line in imports(f"cloudlora.jobs.{m}", mods[f"cloudlora.jobs.{m}"], mods)
               if target in working]
    assert reached == []
