"""The package layout (docs/DESIGN.md §1): imports run one way, in the order of the DAG, and a stage
reaches the stages before it only through their read sides; no stage reads a later stage's params;
stage scripts hold no logic; training and evaluation depend on few modules."""

import ast
from pathlib import Path

import pytest

from tests.test_dvc_yaml import STAGES, code_closure, imported_names

ROOT = Path(__file__).resolve().parents[1]
# the layers, in the order of their imports: core and geometry are shared by every stage (lbo lives in geometry);
# render is below the stages that render; network ranks above densepose although the DAG runs it first (it learns
# from the synthetic source's store, ALLOWED below)
RANK = {"core": 0, "geometry": 1, "template": 2, "render": 3, "densepose": 4, "images": 5, "network": 6, "iuv": 7,
        "keypoints": 8, "train": 9, "evaluate": 10}
# the one module of each stage package that later stages may import: the read side of its artifact
READ_SIDE = {"template": "file", "densepose": "store", "images": "store", "network": "checkpoint", "iuv": "store",
             "keypoints": "store", "train": "checkpoint"}
# imports of another stage's module past the rules above (a later layer, or not its read side), each with its reason
ALLOWED = {
    ("pipeline/iuv/fullframe.py", "pipeline/densepose/convert.py"):
        "pastes repaired crops back into the image with Detectron2's own resampling, the inverse of the crop",
    ("pipeline/images/write.py", "pipeline/densepose/synthetic.py"):
        "the images stage runs the synthetic source with its photo renderer on: images.zarr is that source's store "
        "with photos",
    ("pipeline/images/write.py", "pipeline/densepose/write.py"):
        "what it returns is the synthetic source's summary, DenseposeSummary",
    ("pipeline/network/checkpoint.py", "pipeline/densepose/convert.py"):
        "predict_crops turns the chart head's output into crops with Detectron2's converters, as the detectron2 "
        "source does",
    ("pipeline/densepose/network.py", "pipeline/network/checkpoint.py"):
        "an import to a later layer: the DVC DAG runs network before densepose, but the network learns from the "
        "synthetic source's store, so its code ranks above densepose; the source imports only the checkpoint read "
        "side",
    ("pipeline/evaluate/loop.py", "pipeline/train/refine.py"):
        "test-time refinement is how the evaluation uses the trained model; out of checkpoint.py, so that a change to "
        "it reruns evaluate, not train",
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
        if (module, target) in ALLOWED:
            continue
        other = _package(target)
        assert RANK[other] <= RANK[own], f"{module} imports {target}, a later stage's module"
        if other != own and other in READ_SIDE:
            assert target == f"pipeline/{other}/{READ_SIDE[other]}.py", \
                f"{module} imports {target}: a later stage may import only {other}'s read side"


def test_every_stage_package_has_its_read_side():
    for package, module in READ_SIDE.items():
        assert (ROOT / "pipeline" / package / f"{module}.py").is_file()
    assert (ROOT / "pipeline/geometry/lbo.py").is_file()  # lbo.npz: save_basis / load_basis



def test_every_allowed_import_is_made():
    for module, target in ALLOWED:
        assert target in _imports(module), f"ALLOWED is stale: {module} no longer imports {target}"


SHARED = ("core", "geometry", "render")  # the packages that are no stage's


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_stage_has_one_package(stage):
    """Each DVC stage (dvc.yaml and sources/dvc.yaml) has one package of pipeline/ (lbo: geometry/lbo.py), the one
    its script's entry point comes from; every other package is shared."""
    package = "pipeline/geometry/lbo.py" if stage == "lbo" else f"pipeline/{stage}/"
    assert (ROOT / package).exists(), f"stage {stage} has no package {package}"
    assert any(m.startswith(package) for m in _imports(f"stages/{stage}.py")), f"stages/{stage}.py runs no {package}"
    assert set(RANK) - set(SHARED) == set(STAGES) - {"lbo"}


SCRIPTS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "stages").glob("*.py") if p.stem in STAGES)


@pytest.mark.parametrize("module", [*MODULES, *SCRIPTS])
def test_only_the_rendering_stages_import_the_renderer(module):
    """pipeline/render/ is imported, within pipeline/ and stages/, by the densepose and images packages alone (and
    their scripts); tests, scripts and benchmarks are free."""
    owner = _package(module) if module.startswith("pipeline/") else Path(module).stem
    for target in _imports(module):
        if target.startswith("pipeline/render/") and owner != "render":
            assert owner in ("densepose", "images"), f"{module} imports the renderer ({target})"


@pytest.mark.parametrize("module", [m for m in MODULES if _package(m) == "densepose"])
def test_densepose_holds_no_renderer_and_no_training(module):
    """In pipeline/densepose/ only the synthetic source imports the renderer, and only the network source the network
    package, through its read side; no module trains (torch.optim)."""
    for target in _imports(module):
        if target.startswith("pipeline/render/"):
            assert module == "pipeline/densepose/synthetic.py", f"{module} imports the renderer ({target})"
        if target.startswith("pipeline/network/"):
            assert (module, target) == ("pipeline/densepose/network.py", "pipeline/network/checkpoint.py"), \
                f"{module} imports {target}"
    assert "torch.optim" not in (ROOT / module).read_text(), f"{module} trains"

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


# evaluate: inputs.py, page.py (index.html), train/refine.py with train/losses.py and geometry/lbo.py (test-time
# refinement); both: core/dispatch.py (stages/__init__.py), train/rounds.py (round 1)
@pytest.mark.parametrize("stage, most", [("train", 18), ("evaluate", 25)])
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
