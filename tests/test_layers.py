"""The package's layout stays true: floors import downwards only, no cycles, front ends alone in
``samkit/cli/``, and unit tests run without the official package (docs/ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "samkit"

# floor of each top-level part of the package (a module imports only from its floor or lower)
FLOORS = {
    "errors": 1, "fileio": 1, "imageio": 1, "visualize": 1, "lru": 1, "lazy": 1,
    "model": 2, "configs": 2, "checkpoint": 2, "weights": 2, "builder": 2,
    "masks": 3, "prompts": 3, "data": 3,
    "image_predictor": 4, "session": 4, "video": 4,
    "automask": 5, "engine": 5, "evaluate": 5, "train": 5, "export": 5, "studio": 5, "demo": 5, "onnx": 5,
    "cli": 6,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """``(imported samkit module, at module level)`` for every import statement of a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, top) for a in child.names if a.name.split(".")[0] == "samkit")
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                if mod.split(".")[0] == "samkit":
                    found.extend((f"{mod}.{a.name}" if mod == "samkit" else mod, top) for a in child.names)
            visit(child, inner)

    visit(tree, True)
    return found


def _part(module: str) -> str | None:
    """``samkit.video.frames`` -> ``video``; the package itself -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_part_has_a_floor() -> None:
    parts = {_part(m) for m in MODULES} - {None}
    assert parts <= set(FLOORS), f"give these a floor in FLOORS and docs/ARCHITECTURE.md: {parts - set(FLOORS)}"


@pytest.mark.parametrize("module", [m for m in MODULES if _part(m) is not None])
def test_imports_go_down_the_floors(module: str) -> None:
    floor = FLOORS[_part(module)]
    upward = [(imp, top) for imp, top in _imports(MODULES[module])
              if _part(imp) is not None and _part(imp) in FLOORS and FLOORS[_part(imp)] > floor]
    assert not upward, f"{module} (floor {floor}) imports from above: {upward}"


def test_only_the_front_ends_use_the_cli_or_argparse() -> None:
    offenders = []
    for module, path in MODULES.items():
        if _part(module) == "cli":
            continue
        if any(_part(imp) == "cli" for imp, _ in _imports(path)):
            offenders.append(f"{module} imports samkit.cli")
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) else [])
            if "argparse" in names:
                offenders.append(f"{module} imports argparse")
    assert not offenders, offenders


def test_the_model_imports_only_itself_and_errors() -> None:
    for module, path in MODULES.items():
        if _part(module) == "model":
            others = {imp for imp, _ in _imports(path) if _part(imp) not in ("model", "errors")}
            assert not others, f"{module} imports {sorted(others)}"


def test_shared_pieces_import_no_feature() -> None:
    features = {p for p, f in FLOORS.items() if f >= 4}
    for module, path in MODULES.items():
        if _part(module) in ("masks", "prompts", "data"):
            bad = {imp for imp, _ in _imports(path) if _part(imp) in features}
            assert not bad, f"{module} imports the feature modules {sorted(bad)}"


def test_evaluation_does_not_import_training() -> None:
    for module, path in MODULES.items():
        if _part(module) == "evaluate":
            bad = {imp for imp, _ in _imports(path) if _part(imp) == "train"}
            assert not bad, f"{module} imports {sorted(bad)}"


def test_no_import_cycles_at_module_level() -> None:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        deps = set()
        for imp, top in _imports(path):
            if not top:
                continue
            while imp and imp not in MODULES:  # `from samkit.x import name` -> samkit.x
                imp = imp.rpartition(".")[0]
            if imp and imp != module:
                deps.add(imp)
        graph[module] = deps
    # a package's __init__ importing its own submodules is how packages work, not a cycle
    def real(a: str, b: str) -> bool:
        return not (MODULES[a].name == "__init__.py" and b.startswith(a + "."))

    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if not real(node, dep):
                continue
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                dfs(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node)
    assert not cycles, f"import cycles: {cycles}"


def test_unit_tests_do_not_import_the_official_package() -> None:
    """Every comparison with ``sam2`` lives in tests/parity/, so the rest runs without it."""
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if "parity" in path.relative_to(ROOT).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "importorskip" and node.args:
                arg = node.args[0]
                mods = [arg.value] if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else []
            offenders += [f"{path.relative_to(ROOT)}: {m}" for m in mods if m.split(".")[0] == "sam2"]
    assert not offenders, offenders
