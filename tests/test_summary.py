"""scripts/summary.py: the last lines of ``make repro``, from the metrics files the stages wrote."""

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import summary  # noqa: E402


def test_the_headline_figures_come_from_the_metrics_files(tmp_path):
    (tmp_path / "densepose.json").write_text(json.dumps({"instances": 30, "source": "precomputed", "train": 20,
                                                         "test": 10}))
    (tmp_path / "iuv.json").write_text(json.dumps({"instances_in": 30}))
    (tmp_path / "keypoints.json").write_text(json.dumps({"instances_out": 27, "median_error_px": 2.44}))
    (tmp_path / "eval.json").write_text(json.dumps({"mpjpe_mm": 150.0, "flat_mpjpe_mm": 200.0, "test_instances": 10,
                                                    "split": "test", "parts_used": 9, "regions_distinct": False,
                                                    "network_alone": {"mpjpe_mm": 171.25}}))
    lines = summary.summary_lines(tmp_path, tmp_path / "no-report")
    text = "\n".join(lines)
    assert "30 instances from source precomputed (20 train, 10 test)" in text
    assert "27 instances kept of 30; median correspondence error 2.4 px" in text
    assert "MPJPE 150.0 mm on 10 test instances (0.75 of the flat reference's 200.0 mm); 9 parts used, regions NOT " \
           "distinct" in text
    assert "the network's prediction alone, before test-time refinement: MPJPE 171.2 mm" in text
    assert "report" not in text and lines[-1].strip().startswith("compare    dvc metrics diff")


def test_without_ground_truth_and_before_any_run(tmp_path):
    (tmp_path / "eval.json").write_text(json.dumps({"instances": 4, "reproj2d_mean_px": 12.14}))
    text = "\n".join(summary.summary_lines(tmp_path))
    assert "4 instances without ground truth: re-projection error 12.1 px (mean)" in text and "alone" not in text
    run = subprocess.run([sys.executable, "scripts/summary.py", "--metrics", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and f"not run yet: no {tmp_path / 'none' / 'eval.json'}" in run.stdout


def test_make_repro_ends_with_the_summary():
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    recipe = makefile.split("\nrepro:", 1)[1].split("\n\n", 1)[0].strip().splitlines()
    lines = [r.strip() for r in recipe]
    assert lines[1] == "dvc repro" and lines[-1] == "python scripts/summary.py"  # lines[0]: its prerequisites
    # between them, the outputs against the committed lock; a difference is reported, not a failure
    assert any(r.startswith("python scripts/compare_locks.py --base HEAD dvc.lock") for r in lines)
    assert any(r.startswith("|| echo") for r in lines)
