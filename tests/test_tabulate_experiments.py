"""scripts/tabulate_experiments.py on a hand-made `dvc exp show --json` (DVC 3.x layout)."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "tabulate_experiments", Path(__file__).resolve().parents[1] / "scripts" / "tabulate_experiments.py")
tab = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(tab)


def _state(rev, name, parts, arap, mpjpe, re14, **extra):
    return {"rev": rev, "name": name, "error": None, "experiments": None, "data": {
        "rev": rev, "timestamp": "2026-11-25T09:00:00", "meta": {"has_checkpoints": False},
        "deps": {"data/keypoints.zarr": {"hash": "abc.dir", "size": 1, "nfiles": 2}},
        "outs": {"models/model.pt": {"hash": "def", "size": 3, "nfiles": None, "use_cache": True,
                                     "is_data_source": False}},
        "params": {"params.yaml": {"data": {"model": {"type": "dp3d", "parts": parts}, "loss": {"arap": arap}}}},
        "metrics": {"metrics/eval.json": {"data": {"mpjpe_mm": mpjpe, "re14_mm": re14, **extra}},
                    "metrics/train/metrics.json": {"data": {"loss": 0.25}}},
    }}


EXP_SHOW = [
    {**_state("workspace", None, 10, 0.3, 99.0, 88.0), "rev": "workspace"},
    {**_state("a" * 40, "main", 10, 0.3, 80.04, 60.0), "experiments": [
        {"name": "dp3d-parts-5", "executor": {"state": "success", "name": None, "local": None},
         "revs": [_state("b" * 40, "dp3d-parts-5", 5, 0.3, 75.55, 55.0)]},
        {"name": "no-arap", "executor": None, "revs": [_state("c" * 40, "no-arap", 10, 0.0, 90.0, 70.0)]},
        {"name": "dp3d-parts-1", "executor": {"state": "success"},
         "revs": [_state("d" * 40, "dp3d-parts-1", 1, 0.3, 120.0, 100.0)]},
        {"name": "queued-one", "executor": {"state": "queued", "name": None, "local": None},
         "revs": [{"rev": "e" * 40, "name": "queued-one", "data": None, "error": None, "experiments": None}]},
    ]},
]


def test_flatten_keeps_baselines_and_successful_experiments():
    rows = tab.flatten(EXP_SHOW)
    assert [r["name"] for r in rows] == ["main", "dp3d-parts-5", "no-arap", "dp3d-parts-1"]
    assert rows[1]["params"]["model"]["parts"] == 5
    assert [r["name"] for r in tab.flatten(EXP_SHOW, workspace=True, everything=True)][0] == "workspace"
    assert "queued-one" in [r["name"] for r in tab.flatten(EXP_SHOW, everything=True)]


def test_markdown_table_of_the_parts_curve():
    out = tab.main(["-", "--params", "model.parts", "--metrics", "mpjpe_mm", "re14_mm",
                    "metrics/train/metrics.json:loss", "--sort-by", "model.parts", "--only", "parts",
                    "--precision", "2"], stdin=io.StringIO(json.dumps(EXP_SHOW)))
    assert out.splitlines() == [
        "| experiment | model.parts | mpjpe_mm | re14_mm | loss |",
        "| --- | ---: | ---: | ---: | ---: |",
        "| dp3d-parts-1 | 1 | 120.00 | 100.00 | 0.25 |",
        "| dp3d-parts-5 | 5 | 75.55 | 55.00 | 0.25 |",
    ]


def test_table_from_a_file_sorted_by_a_metric_with_missing_cells(tmp_path):
    path = tmp_path / "exps.json"
    path.write_text(json.dumps(EXP_SHOW))
    out = tab.main([str(path), "--params", "loss.arap", "model.nothing", "--metrics", "mpjpe_mm", "s2s_mm",
                    "--sort-by", "mpjpe_mm", "--no-baseline"])
    lines = out.splitlines()
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| dp3d-parts-5", "| no-arap", "| dp3d-parts-1"]
    assert lines[3] == "| no-arap | 0.0 | – | 90.0 | – |"


def test_bad_json_is_named():
    with pytest.raises(SystemExit, match="dvc exp show"):
        tab.main(["-"], stdin=io.StringIO("{not json"))
    with pytest.raises(SystemExit, match="list"):
        tab.main(["-"], stdin=io.StringIO("{}"))
