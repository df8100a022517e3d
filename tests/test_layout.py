"""The package layout (docs/DESIGN.md §1): imports run one way, in the order of the DAG, and a stage
reaches the stages before it only through their read sides; no stage reads a later stage's params;
stage scripts hold no logic; training and evaluation depend on few modules."""

import ast
from pathlib import Path

import pytest

from tests.test_dvc_yaml import STAGES, code_closure, imported_names

ROOT = Path(__file__).resolve().parents[1]
# the layers, in DAG order: core and geometry are shared by every stage; lbo lives in geometry
RANK = {"core": 0, "geometry": 1, "template": 2, "densepose": 3, "iuv": 4, "keypoints": 5, "train": 6, "evaluate": 7}
# the one module of each stage package that later stages may import: the read side of its artifact
READ_SIDE = {"template": "file", "densepose": "store", "iuv": "store",
             "keypoints": "store", "train": "checkpoint"}
# cross-stage imports of another module, each with its reason
ALLOWED = {
    ("pipeline/iuv/fullframe.py", "pipeline/densepose/convert.py"):
        "pastes repaired crops back into the image with Detectron2's own resampling, the inverse of the crop",
}
MODULES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "pipeline").rglob("*.py"))


def _package(path: str) -> str:
    parts = path.split("/")
    return parts[1] if len(parts) > 2 else ""


def _imports(path: str) -> set[str]:
    """The pipeline modules ``path`` imports (function-level imports included), as paths."""
    candidates = (name.replace(".", "/") + ".py" for name in imported_names(path) if name.startswith("pipeline."))
    return {c for c in candidates if (ROOT / c).is_file()}


def test_every_module_is_in_a_layer():
    assert {_package(m) for m in MODULES} - {""} == set(RANK)


@pytest.mark.parametrize("module", [m for m in MODULES if _package(m)])
def test_imports_run_in_dag_order_through_read_sides(module):
    own = _package(module)
    for target in _imports(module):
        other = _package(target)
        assert RANK[other] <= RANK[own], f"{module} imports {target}, a later stage's module"
        if other != own and other in READ_SIDE and (module, target) not in ALLOWED:
            assert target == f"pipeline/{other}/{READ_SIDE[other]}.py", \
                f"{module} imports {target}: a later stage may import only {other}'s read side"


def test_every_stage_package_has_its_read_side():
    for package, module in READ_SIDE.items():
        assert (ROOT / "pipeline" / package / f"{module}.py").is_file()
    assert (ROOT / "pipeline/geometry/lbo.py").is_file()  # lbo.npz: save_basis / load_basis


# the params sections each stage owns (the first stage that reads it); `common` and `cluster` are everyone's
SECTION_STAGE = {"template": "template", "lbo": "lbo", "network": "images", "network_source": "densepose",
                 "densepose": "densepose", "synthetic": "images",
                 "detectron2": "densepose", "precomputed": "densepose", "iuv": "iuv", "keypoints": "keypoints",
                 "model": "train", "loss": "train", "train": "train", "eval": "evaluate"}
STAGE_ORDER = ["template", "lbo", "images", "network", "densepose", "iuv", "keypoints", "train", "evaluate"]


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_no_stage_reads_a_later_stages_params(stage):
    params = STAGES[stage]["params"]
    for key in params:
        section = key.split(".")[0]
        if section in ("common", "cluster"):  # everyone's: what every stage shares, how the stages spread
            continue
        owner = SECTION_STAGE[section]
        assert STAGE_ORDER.index(owner) <= STAGE_ORDER.index(stage), f"stage {stage} reads {key}, a later stage's"


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_stage_scripts_hold_no_logic(stage):
    """A stage script parses paths, loads params, calls its library entry points and logs: no branches
    and no loops but the one over the summary's lines."""
    tree = ast.parse((ROOT / "stages" / f"{stage}.py").read_text())
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert functions == ["main"], f"stages/{stage}.py defines {functions}"
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef))
    for node in ast.walk(main):
        assert not isinstance(node, (ast.If, ast.While)), f"stages/{stage}.py: a branch or loop at line {node.lineno}"
        if isinstance(node, ast.For):
            assert ast.unparse(node.iter).endswith(".lines()"), f"stages/{stage}.py: a loop at line {node.lineno}"


@pytest.mark.parametrize("stage, most", [("train", 16), ("evaluate", 20)])  # evaluate: inputs.py, page.py: index.html
def test_training_and_evaluation_depend_on_few_modules(stage, most):
    modules = {m for m in code_closure(f"stages/{stage}.py") if m.startswith("pipeline/")}
    assert len(modules) <= most, sorted(modules)
    assert not any(m.startswith(("pipeline/iuv/", "pipeline/densepose/")) for m in modules)
    assert "pipeline/template/smpl.py" not in modules and "pipeline/template/build.py" not in modules


def test_test_files_have_unique_names():
    """pytest imports test files by their base name (no packages under tests/): two alike would clash."""
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_the_pipeline_does_not_import_the_experiments():
    """experiments/ (the paper's experiments, docs/DESIGN.md §1) drives the pipeline through DVC from outside: no
    stage or pipeline module imports it, so it is no stage's dependency and editing it reruns nothing."""
    scripts = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "stages").glob("*.py"))
    for path in MODULES + scripts:
        assert not any(n.split(".")[0] == "experiments" for n in imported_names(path)), path
    deps = [d for stage in STAGES.values() for d in stage.get("deps", [])]
    assert deps and not any(str(d).startswith("experiments/") for d in deps)
