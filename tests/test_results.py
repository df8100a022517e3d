"""The committed results of the default pipeline (what `dvc repro` writes and docs/results.md quotes) meet
the targets they are quoted for. A fresh clone's `dvc repro` reproduces these files, so this checks the
science of the default run, not a fixture."""

import csv
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT / "metrics" / "eval.json"
SEGMENTATION = ROOT / "metrics" / "segmentation.csv"
TABLE1 = ROOT / "metrics" / "paper" / "table1.csv"


@pytest.fixture(scope="module")
def metrics():
    return json.loads(EVAL.read_text())


def test_default_dp3d_lifts_to_3d(metrics):
    """On the default, network-matched corruption DP3D beats the flat reference (true x, y, zero depth) by 20 %
    or more (measured: 146.8 / 195.6 = 0.75; on the mild corruption 0.61, Table 1 below); the error is split."""
    assert metrics["mpjpe_mm"] <= 0.80 * metrics["flat_mpjpe_mm"]
    assert metrics["xy_mm"] > 0 and metrics["z_mm"] > 0
    assert metrics["flip_better_share"] < 0.1  # depth signs settled


def test_default_segmentation_uses_coherent_parts(metrics):
    """Every part used, each one region, the layout moved. Not asserted: that head, torso and arms get parts
    of their own — with the network-matched corruption the head's part reaches into the chest and an upper
    arm (docs/results.md), a finding, not a target met; on the mild corruption it held (seeds 0 and 2)."""
    assert metrics["parts_used"] >= 9
    assert metrics["segmentation_min_component_share"] >= 0.9  # each used part is one region
    assert metrics["segmentation_changed_share"] > 0  # the layout moved during training
    with open(SEGMENTATION, newline="") as fh:
        rows = {r["region"]: r for r in csv.DictReader(fh)}
    major = {k: int(rows[k]["majority_part"]) for k in ("head", "torso", "left forearm+hand", "right forearm+hand")}
    assert major["head"] != major["torso"] and major["left forearm+hand"] != major["right forearm+hand"]


@pytest.mark.skipif(not TABLE1.exists(), reason="metrics/paper/table1.csv not made yet (scripts/paper_experiments.py)")
def test_table1_has_the_columns_and_seeds():
    with open(TABLE1, newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["experiment", "seed", "mpjpe_mm", "re14_mm", "xy_mm", "z_mm", "flat_mpjpe_mm",
                                     "parts_used"]
        rows = list(reader)
    seeds = {}
    for r in rows:
        seeds.setdefault(r["experiment"], set()).add(r["seed"])
    assert "dp3d" in seeds and len(seeds["dp3d"]) >= 3
    dp3d = [r for r in rows if r["experiment"] == "dp3d"]  # the mild corruption (TABLES_DATA): 0.63 of flat
    assert sum(float(r["mpjpe_mm"]) for r in dp3d) <= 0.70 * sum(float(r["flat_mpjpe_mm"]) for r in dp3d)
