"""dvc.yaml lists, for each stage, exactly the code it runs: the stage script and every pipeline module
it imports, directly or through other modules (imports inside functions included). A missing entry
would let DVC's cache serve a stale output after a code change; an extra one reruns stages for nothing."""

import ast
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PIPELINE_FILES = ("dvc.yaml", "sources/dvc.yaml")  # sources/: the stages only densepose.source network needs


def pipeline_stages() -> dict:
    """Every stage of the repository's pipeline files, by name (names are unique across them)."""
    stages = {}
    for name in PIPELINE_FILES:
        found = yaml.safe_load((ROOT / name).read_text())["stages"]
        assert not set(found) & set(stages), f"{name}: a stage name used twice"
        stages.update(found)
    return stages


STAGES = pipeline_stages()


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
    ``__init__.py`` of each package on the way when it holds code (a docstring alone changes nothing) — the
    script's own packages included: ``python -m stages.train`` runs ``stages/__init__.py`` first, which pins
    the CPU dispatch (pipeline/core/dispatch.py), so every stage depends on it."""
    seen, todo = set(), [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for parent in Path(path).parents[:-1]:  # the packages holding the module (not the repository root)
            init = parent / "__init__.py"
            if (ROOT / init).is_file() and _holds_code(ROOT / init):
                todo.append(init.as_posix())
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


# --- which stages `dvc repro` runs for each densepose.source -------------------------------------------------

NETWORK_STAGES = ["sources/dvc.yaml:images", "sources/dvc.yaml:network"]
MAIN = ["template", "lbo", "densepose", "iuv", "keypoints", "train", "evaluate"]


def _tracked(*folders: str) -> list[str]:
    """The files git tracks under ``folders`` (repository-relative)."""
    return subprocess.run(["git", "ls-files", *folders], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.split()


def _repro_plan(tmp_path: Path, source: str, targets: tuple[str, ...] = ()) -> list[str]:
    """The stages, in order, that ``dvc repro [targets]`` would run from a clean state with ``densepose.source``:
    DVC's own planner (dvc.repo.reproduce, what ``dvc repro`` calls) on a copy of the pipeline files. (``dvc repro
    --dry`` cannot say it in a clean state: it stops at the first stage whose deps are not made yet.)"""
    import contextlib
    import shutil

    from dvc.repo import Repo
    from dvc.repo.reproduce import collect_stages, get_active_graph, plan_repro

    repo = tmp_path / source
    for name in (*PIPELINE_FILES, "params.yaml", *_tracked("sources")):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["densepose"]["source"] = source
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    Repo.init(str(repo), no_scm=True).close()
    with contextlib.chdir(repo), Repo(str(repo)) as dvc:  # targets and stage names are relative to the cwd
        stages = collect_stages(dvc, list(targets) or ["dvc.yaml"])
        return [s.addressing for s in plan_repro(get_active_graph(dvc.index.graph), stages)]


@pytest.mark.parametrize("source", ["synthetic", "detectron2", "precomputed"])
def test_a_source_that_runs_no_network_trains_none(tmp_path, source):
    """`dvc repro` (and `dvc exp run`) with any source but network runs neither images nor network: densepose
    depends on sources/<source>.txt, a file in git, not on models/network.pt."""
    assert _repro_plan(tmp_path, source) == MAIN


def test_the_network_source_pulls_in_its_network_first(tmp_path):
    assert _repro_plan(tmp_path, "network") == ["template", "lbo", *NETWORK_STAGES, *MAIN[2:]]
    # and the network alone, whatever the source (to measure it: metrics/correspondence.json)
    assert _repro_plan(tmp_path / "alone", "synthetic", ("sources/dvc.yaml",)) == ["template", *NETWORK_STAGES]


def test_every_densepose_source_has_its_dependency_file():
    """sources/<source>.txt exists in git for each non-network source; for network it is the network stage's stamp
    of the checkpoint (so a retrained network reruns densepose), which the stage script writes."""
    from pipeline.core.config import DenseposeParams

    choices = DenseposeParams.__dataclass_fields__["source"].metadata.get("choices") or ()
    assert set(choices) >= {"synthetic", "detectron2", "precomputed", "network"}
    deps = STAGES["densepose"]["deps"]
    assert "sources/${densepose.source}.txt" in deps and "models/network.pt" not in deps
    tracked = set(subprocess.run(["git", "ls-files", "sources"], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.split())
    for source in choices:  # network's is the network stage's output (git-ignored), the others are in git
        assert (f"sources/{source}.txt" in tracked) == (source != "network"), source
    network = STAGES["network"]
    assert "sources/network.txt" in network["outs"] and "--stamp sources/network.txt" in network["cmd"]
    assert {"wdir": ".."}.items() <= network.items() and {"wdir": ".."}.items() <= STAGES["images"].items()


# --- the inputs a user names in params.yaml are dependencies -------------------------------------------------

def _path_params() -> list[tuple[str, str]]:
    """(section, key) of every param that names a user's input file or folder (``path_param``)."""
    import dataclasses
    import typing

    from pipeline.core.config import Params

    sections = typing.get_type_hints(Params)
    return [(name, f.name) for name, cls in sections.items() if dataclasses.is_dataclass(cls)
            for f in dataclasses.fields(cls) if f.metadata.get("path")]


def test_every_user_named_input_is_a_dependency_of_the_stage_reading_it():
    from pipeline.core.config import UNSET_PATH, load_params

    found = _path_params()
    assert {("precomputed", "boxes_json"), ("precomputed", "dump"), ("network_source", "images"),
            ("template", "smpl_model"), ("detectron2", "weights")} <= set(found)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, key in found:
        stages = [name for name, st in STAGES.items() if section in st.get("params", [])]
        assert stages, f"{section}.{key}: no stage lists params section {section}"
        for name in stages:
            assert f"${{{section}.{key}}}" in STAGES[name]["deps"], f"dvc.yaml {name}: ${{{section}.{key}}} not a dep"
        # DVC needs an existing path for each: params.yaml leaves them at the placeholder in git, read as unset
        assert params[section][key] == UNSET_PATH, f"params.yaml {section}.{key}"
        assert getattr(getattr(load_params(ROOT / "params.yaml"), section), key) == ""
    assert UNSET_PATH in _tracked("sources")


def test_an_edited_boxes_json_is_seen_by_dvc_status(tmp_path):
    """Edit the boxes JSON of a precomputed run in place: `dvc status` names it (today's DVC, on a copy of the
    repository with the densepose stage's outputs committed by `dvc commit`)."""
    import json
    import shutil
    import sys

    repo = tmp_path / "repo"
    for name in _tracked("dvc.yaml", "sources", "params.yaml", "stages", "pipeline"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    (repo / "mine").mkdir()
    boxes = repo / "mine" / "boxes.json"
    boxes.write_text(json.dumps({"images": [{"file_name": "a.jpg", "iuv": "a_IUV.png", "boxes": [[0, 0, 9, 9]]}]}))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["densepose"]["source"] = "precomputed"
    params["precomputed"].update(format="iuv_png", iuv_folder="mine", boxes_json="mine/boxes.json")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for out in ("data/template.npz", "data/densepose_contact.png", "metrics/densepose.json",
                "data/densepose.zarr/zarr.json"):  # stand-ins: only their hashes matter here
        (repo / out).parent.mkdir(parents=True, exist_ok=True)
        (repo / out).write_text("{}")
    dvc = [sys.executable, "-m", "dvc"]
    for cmd in (["init", "--no-scm", "-q"], ["commit", "-f", "-q", "densepose"]):
        run = subprocess.run(dvc + cmd, cwd=repo, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr

    def status() -> str:
        run = subprocess.run(dvc + ["status", "densepose"], cwd=repo, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr
        return run.stdout

    assert "mine/boxes.json" not in status()
    boxes.write_text(boxes.read_text().replace("[0, 0, 9, 9]", "[0, 0, 19, 19]"))
    assert "modified:           mine/boxes.json" in status()
