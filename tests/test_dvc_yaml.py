"""dvc.yaml lists, for each stage, exactly the code it runs: the stage script and every pipeline module
it imports, directly or through other modules (imports inside functions included). A missing entry
would let DVC's cache serve a stale output after a code change; an extra one reruns stages for nothing."""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _holds_code(init: Path) -> bool:
    """Whether a package's ``__init__.py`` runs anything (more than a docstring)."""
    body = ast.parse(init.read_text()).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in body)


def imported_names(path: str) -> list[str]:
    """Every dotted name ``path`` imports, a module or a module's member (imports inside functions included)."""
    names = []
    for node in ast.walk(ast.parse((ROOT / path).read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return names


def code_closure(script: str) -> set[str]:
    """Repository-relative paths of ``script`` and every ``pipeline``/``stages`` module it imports, with the
    ``__init__.py`` of each package on the way when it holds code (a docstring alone changes nothing)."""
    seen, todo = set(), [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_names(path):
            parts = name.split(".")
            if parts[0] not in ("pipeline", "stages"):
                continue
            candidate = "/".join(parts) + ".py"
            if (ROOT / candidate).is_file():
                todo.append(candidate)
            for i in range(1, len(parts) + 1):
                init = "/".join(parts[:i]) + "/__init__.py"
                if (ROOT / init).is_file() and _holds_code(ROOT / init):
                    todo.append(init)
    return seen


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_code_deps_are_exactly_what_the_stage_imports(stage):
    deps = {d for d in STAGES[stage]["deps"] if d.endswith(".py")}
    needed = code_closure(f"stages/{stage}.py")
    assert not needed - deps, f"dvc.yaml stage {stage}: missing deps {sorted(needed - deps)}"
    assert not deps - needed, f"dvc.yaml stage {stage}: deps it does not import {sorted(deps - needed)}"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_stage_that_fixes_its_threads_by_params_lists_them(stage):
    """`common.threads` changes the numerics: a stage that reads it must rerun when it changes."""
    if "params.common.threads" not in (ROOT / f"stages/{stage}.py").read_text():
        return
    params = STAGES[stage]["params"]
    assert "common" in params or "common.threads" in params, f"dvc.yaml stage {stage}: add common.threads"
