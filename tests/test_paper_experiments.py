"""The experiments package (``scripts/paper_experiments.py``) with a fake runner instead of DVC: the CSVs, resuming,
failures, the statistics on hand-made numbers, the C3DPO weight, the Markdown, the figure, the DVC command lines
(through a fake process runner), and the script's own command line."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from experiments import cli, parts, robust, runner, selection, sources, summary, table1
from experiments.data import ALONE, DATA, MILD, REFINE

ROOT = Path(__file__).resolve().parents[1]
TABLE1_HEADER = ["experiment", "seed", "mpjpe_mm", "re14_mm", "xy_mm", "z_mm", "flat_mpjpe_mm", "parts_used",
                 "regions_distinct"]
PARTS_HEADER = ["parts", "seed", "mpjpe_mm", "re14_mm", "xy_mm", "z_mm", "flat_mpjpe_mm", "parts_used",
                "regions_distinct"]


class FakeRunner:
    """Deterministic metrics from the overrides; records every call; fails the names in ``fail``."""

    def __init__(self, fail=()):
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.fail = set(fail)

    def __call__(self, name, overrides):
        self.calls.append((name, tuple(overrides)))
        if name in self.fail:
            raise RuntimeError(f"training of {name} diverged")
        o = dict(x.split("=", 1) for x in overrides)
        seed = int(o.get("train.seed", 0))
        mpjpe = 100.0 + int(o.get("model.parts", 10)) + seed + 50.0 * (o.get("model.type") == "c3dpo")
        mpjpe += 100.0 * float(o.get("loss.canonicalisation", 0.1)) if "eval.split" in o else 0.0
        return {"mpjpe_mm": mpjpe, "re14_mm": mpjpe / 2, "xy_mm": 10.0, "z_mm": mpjpe - 10.0,
                "flat_mpjpe_mm": 200.0, "parts_used": int(o.get("model.parts", 10)) - 1, "regions_distinct": seed != 1}


def _read(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])


@pytest.fixture(autouse=True)
def _no_base_overrides(monkeypatch):
    """The runs below are checked on their own overrides; TABLES_DATA (the corruption the tables were made
    with) is checked on its own."""
    monkeypatch.setattr("experiments.data.TABLES_DATA", [])
    monkeypatch.setattr("experiments.data.ALONE", [])


def test_table_runs_keep_the_corruption_and_evaluation_they_were_made_with(monkeypatch):
    monkeypatch.setattr("experiments.data.TABLES_DATA", MILD)
    monkeypatch.setattr("experiments.data.ALONE", ALONE)
    runs = table1.runs([0], 0.01) + parts.runs([0]) + selection.runs()
    assert all(r.overrides[:5] == (*MILD, "eval.refine_steps=0") for r in runs)
    assert "synthetic.corruption.mirror_prob=0" in MILD and "synthetic.corruption.uv_noise=0.02" in MILD
    assert all(not r.overrides[:1] == tuple(MILD[:1]) for r in sources.runs([0]) if r.key[0] != "mild")


def test_table1_csv_has_one_row_per_experiment_and_seed(tmp_path):
    fake = FakeRunner()
    assert cli.main(["table1", "--seeds", "0", "1", "--out-dir", str(tmp_path)], run=fake) == 0
    header, rows = _read(tmp_path / "table1.csv")
    assert header == TABLE1_HEADER
    assert [(r[0], r[1]) for r in rows] == [(e, s) for e in table1.TABLE1 for s in ("0", "1")]
    calls = dict(fake.calls)
    assert calls["t1-dp3d-s1"] == ("train.seed=1",)
    assert calls["t1-dp3d_paper-s0"] == ("loss.facing=0", "train.seed=0")
    assert calls["t1-no_arap-s1"] == ("loss.arap=0", "train.seed=1")
    assert calls["t1-no_parts-s0"] == ("model.type=no_parts", "train.seed=0")
    # no selection yet: C3DPO with in-plane augmentation, 4 canonicalisation samples and weight 0.1
    assert calls["t1-c3dpo-s0"] == ("model.type=c3dpo", "train.inplane_augment=true", "loss.canon_samples=4",
                                    "loss.canonicalisation=0.1", "train.seed=0")
    dp3d_s1 = rows[1]
    assert dp3d_s1 == ["dp3d", "1", "111.0", "55.5", "10.0", "101.0", "200.0", "9", "false"]
    sidecar = json.loads((tmp_path / "runs.json").read_text())
    assert sidecar["t1-no_arap-s1"]["overrides"] == ["loss.arap=0", "train.seed=1"]
    assert sidecar["t1-no_arap-s1"]["wall_s"] >= 0
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporary file


def test_robust_ablation_runs_each_option_on_the_default_data(tmp_path):
    """No mild corruption: the robust losses are about the default data's errors; a table laid out as Table 1
    against today's pseudo-Huber."""
    fake = FakeRunner()
    assert cli.main(["robust", "--seeds", "0", "1", "--out-dir", str(tmp_path)], run=fake) == 0
    calls = dict(fake.calls)
    assert calls["rob-pseudo_huber-s0"] == ("common.threads=1", "train.seed=0")
    assert calls["rob-geman_mcclure-s1"] == ("common.threads=1", "loss.robust=geman_mcclure", *robust.ROBUST_ANNEAL,
                                             "train.seed=1")
    assert calls["rob-mirror-s0"] == ("common.threads=1", "loss.mirror=true", "train.seed=0")
    assert not any(o in MILD for overrides in calls.values() for o in overrides)
    header, rows = _read(tmp_path / "robust_default.csv")
    assert sorted((r[0], r[1]) for r in rows) == sorted((e, s) for e in robust.ROBUST for s in ("0", "1"))
    md = (tmp_path / "robust_default.md").read_text()
    assert md.startswith("Robust lifting losses on the default data") and "Δ MPJPE vs pseudo_huber" in md


def test_parts_csv_and_the_only_filter(tmp_path):
    fake = FakeRunner()
    assert cli.main(["parts", "--seeds", "0,2", "--out-dir", str(tmp_path), "--only", "parts-1"], run=fake) == 0
    assert [name for name, _ in fake.calls] == ["parts-1-s0", "parts-1-s2", "parts-10-s0", "parts-10-s2",
                                                "parts-16-s0", "parts-16-s2"]  # a substring of the name
    assert dict(fake.calls)["parts-10-s2"] == ("model.parts=10", "train.seed=2")
    assert cli.main(["parts", "--seeds", "0", "2", "--out-dir", str(tmp_path), "--only", "parts-2-"], run=fake) == 0
    header, rows = _read(tmp_path / "parts_curve.csv")
    assert header == PARTS_HEADER
    assert [(r[0], r[1], r[2]) for r in rows] == [  # sorted by number of parts, then seed
        ("1", "0", "101.0"), ("1", "2", "103.0"), ("2", "0", "102.0"), ("2", "2", "104.0"),
        ("10", "0", "110.0"), ("10", "2", "112.0"), ("16", "0", "116.0"), ("16", "2", "118.0")]


def test_resuming_skips_done_rows_and_reruns_changed_overrides(tmp_path, monkeypatch):
    args = ["table1", "--seeds", "0", "1", "--out-dir", str(tmp_path)]
    cli.main(args, run=FakeRunner())
    again = FakeRunner()
    assert cli.main(args, run=again) == 0
    assert again.calls == []  # everything done

    monkeypatch.setitem(table1.TABLE1, "no_arap", ["loss.arap=0", "loss.arap_instances=0"])
    _, rows = _read(tmp_path / "table1.csv")
    _write_csv(tmp_path / "table1.csv", TABLE1_HEADER, [r for r in rows if r[:2] != ["dp3d", "0"]])
    changed = FakeRunner()
    assert cli.main(args, run=changed) == 0
    assert sorted(name for name, _ in changed.calls) == ["t1-dp3d-s0", "t1-no_arap-s0", "t1-no_arap-s1"]
    _, rows = _read(tmp_path / "table1.csv")
    assert len(rows) == 2 * len(table1.TABLE1)  # rows replaced, not added
    assert [(r[0], r[1]) for r in rows] == [(e, s) for e in table1.TABLE1 for s in ("0", "1")]
    assert json.loads((tmp_path / "runs.json").read_text())["t1-no_arap-s0"]["overrides"] == [
        "loss.arap=0", "loss.arap_instances=0", "train.seed=0"]


def test_a_failed_run_is_reported_and_the_others_still_run(tmp_path, capsys):
    args = ["table1", "--seeds", "0", "1", "--out-dir", str(tmp_path)]
    fake = FakeRunner(fail={"t1-no_arap-s1"})
    assert cli.main(args, run=fake) == 1
    assert len(fake.calls) == 2 * len(table1.TABLE1)
    _, rows = _read(tmp_path / "table1.csv")
    assert ("no_arap", "1") not in {(r[0], r[1]) for r in rows} and len(rows) == 2 * len(table1.TABLE1) - 1
    err = capsys.readouterr().err
    assert "t1-no_arap-s1: RuntimeError: training of t1-no_arap-s1 diverged" in err
    assert "python scripts/paper_experiments.py table1 --only t1-no_arap-s1 --seeds 1" in err
    assert "dvc --wait-for-lock exp run --temp -n t1-no_arap-s1 -S loss.arap=0 -S train.seed=1" in err

    rerun = FakeRunner()
    assert cli.main(args, run=rerun) == 0
    assert [name for name, _ in rerun.calls] == ["t1-no_arap-s1"]


def test_a_run_without_mpjpe_fails():
    outcomes = list(runner.serially(lambda name, overrides: {"re14_mm": 1.0})([runner.Run("x", ("x",), (), "table1")]))
    assert outcomes[0].metrics is None and "mpjpe_mm" in outcomes[0].error


def test_mean_std_and_pooled_std_on_hand_made_numbers():
    assert summary.mean_std([1, "2", 3.0, "", None]) == (2.0, 1.0, 3)
    mean, std, n = summary.mean_std([5.0])
    assert (mean, n) == (5.0, 1) and math.isnan(std)
    assert summary.pooled_std(1.0, 3, 2.0, 3) == pytest.approx(math.sqrt((2 * 1 + 2 * 4) / 4))
    assert summary.pooled_std(math.nan, 1, 2.0, 3) == pytest.approx(2.0)  # one seed adds no variance
    assert math.isnan(summary.pooled_std(math.nan, 1, math.nan, 1))
    assert summary.worse_verdict(3.0, 2.0) == "yes" and summary.worse_verdict(1.0, 2.0) == "no"
    assert summary.worse_verdict(-5.0, 2.0) == "no" and summary.worse_verdict(3.0, math.nan) == "–"


def test_regions_distinct_is_counted_not_averaged():
    """eval.json's boolean, as DVC and the CSV write it; empty cells (runs from before the column) are unknown."""
    assert summary.true_count(["true", "False", "1", True, "", None, "n/a"]) == (3, 4)
    assert summary.true_count([]) == (0, 0)


def _table1_rows():
    def row(exp, seed, mpjpe):
        return {"experiment": exp, "seed": str(seed), "mpjpe_mm": str(mpjpe), "re14_mm": "50",
                "xy_mm": "10", "z_mm": "90", "flat_mpjpe_mm": "200", "parts_used": "10",
                "regions_distinct": "false" if (exp, seed) == ("dp3d", 1) else "true"}
    return ([row("dp3d", s, m) for s, m in enumerate((100, 102, 104))]      # 102 ± 2
            + [row("no_arap", s, m) for s, m in enumerate((103, 105, 107))]  # 105 ± 2: +3 > pooled 2
            + [row("no_canon", s, m) for s, m in enumerate((101, 103, 105))]  # 103 ± 2: +1 < 2
            + [row("c3dpo", 0, 150)])  # one seed: pooled = dp3d's std


def test_table1_differences_and_verdicts():
    lines = {r["experiment"]: r for r in summary.compared_rows(_table1_rows(), table1.REFERENCE, table1.TABLE1)}
    assert list(lines) == ["dp3d", "no_canon", "no_arap", "c3dpo"]  # the order of TABLE1
    assert (lines["no_arap"]["diff"], lines["no_arap"]["pooled"], lines["no_arap"]["verdict"]) == (3.0, 2.0, "yes")
    assert (lines["no_canon"]["diff"], lines["no_canon"]["verdict"]) == (1.0, "no")
    assert (lines["c3dpo"]["diff"], lines["c3dpo"]["pooled"], lines["c3dpo"]["verdict"]) == (48.0, 2.0, "yes")
    assert lines["dp3d"]["verdict"] == "–"
    no_reference = summary.compared_rows([r for r in _table1_rows() if r["experiment"] != "dp3d"], table1.REFERENCE,
                                         table1.TABLE1)
    assert {r["verdict"] for r in no_reference} == {"–"}


def test_summarise_writes_the_markdown_and_the_figure(tmp_path):
    rows = _table1_rows()
    _write_csv(tmp_path / "table1.csv", TABLE1_HEADER, [[r[c] for c in TABLE1_HEADER] for r in rows])
    curve_rows = [[p, s, 150 - p + s, 80, 10, 140, 200, p - 1] for p in (1, 2, 5, 10) for s in (0, 1)]
    _write_csv(tmp_path / "parts_curve.csv", PARTS_HEADER, curve_rows)
    assert cli.main(["summarise", "--out-dir", str(tmp_path)], run=FakeRunner()) == 0

    table1_md = (tmp_path / "table1.md").read_text().splitlines()
    assert table1_md[2] == ("| experiment | seeds | MPJPE | RE14 | xy | z | flat ref. | MPJPE / flat | parts used "
                         "| regions distinct | Δ MPJPE vs dp3d | pooled std | worse by more than pooled std |")
    assert ("| dp3d | 3 | 102.0 ± 2.0 | 50.0 ± 0.0 | 10.0 ± 0.0 | 90.0 ± 0.0 | 200.0 ± 0.0 | 0.510 "
            "| 10.0 ± 0.0 | 2 of 3 | – | – | – |") in table1_md  # seed 1's head and torso share a part
    assert "| no_arap | 3 | 105.0 ± 2.0 | 50.0 ± 0.0 | 10.0 ± 0.0 | 90.0 ± 0.0 | 200.0 ± 0.0 | 0.525 " \
           "| 10.0 ± 0.0 | 3 of 3 | +3.0 | 2.0 | yes |" in table1_md
    assert any(line.startswith("| no_canon | 3 | 103.0 ± 2.0 |") and line.endswith("| +1.0 | 2.0 | no |")
               for line in table1_md)
    assert any(line.startswith("| c3dpo | 1 | 150.0 | ") for line in table1_md)  # one seed: no ± std

    curve = (tmp_path / "parts_curve.md").read_text().splitlines()
    assert curve[2] == ("| parts | seeds | MPJPE | RE14 | xy | z | flat ref. | MPJPE / flat | parts used "
                        "| regions distinct |")
    assert [line.split(" | ")[:3] for line in curve[4:]] == [
        ["| 1", "2", "149.5 ± 0.7"], ["| 2", "2", "148.5 ± 0.7"], ["| 5", "2", "145.5 ± 0.7"],
        ["| 10", "2", "140.5 ± 0.7"]]
    assert curve[-1].endswith("| 0.703 | 9.0 ± 0.0 | – |")  # rows without the value: unknown

    png = tmp_path / "parts_curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    height, width = matplotlib.image.imread(png).shape[:2]
    assert width > 600 and height > 400
    assert not (tmp_path / "c3dpo_selection.md").exists()  # no selection CSV: nothing to summarise


def test_selection_picks_the_lowest_mpjpe_and_table1_uses_it(tmp_path, capsys):
    fake = FakeRunner()
    assert cli.main(["select-c3dpo", "--out-dir", str(tmp_path)], run=fake) == 0
    assert dict(fake.calls)["c3dpo-w10"] == ("model.type=c3dpo", "train.inplane_augment=true", "loss.canon_samples=4",
                                             "train.val_share=0.1", "eval.split=val", "train.seed=0",
                                             "loss.canonicalisation=10")
    header, rows = _read(tmp_path / "c3dpo_selection.csv")
    assert header == ["weight", "mpjpe_mm", "re14_mm"]
    assert [r[:2] for r in rows] == [["0.01", "161.0"], ["0.1", "170.0"], ["1", "260.0"], ["10", "1160.0"]]
    assert "Chosen: **0.01**" in (tmp_path / "c3dpo_selection.md").read_text()

    _write_csv(tmp_path / "c3dpo_selection.csv", ["weight", "mpjpe_mm", "re14_mm"],
               [["0.01", "300", "1"], ["0.1", "250", "1"], ["1", "240.5", "1"], ["10", "", ""]])
    assert selection.c3dpo_weight(tmp_path / "c3dpo_selection.csv") == 1.0
    assert selection.c3dpo_weight(tmp_path / "absent.csv") == 0.1
    capsys.readouterr()
    c3dpo_only = FakeRunner()
    assert cli.main(["table1", "--seeds", "0", "--only", "c3dpo", "--out-dir", str(tmp_path)], run=c3dpo_only) == 0
    assert c3dpo_only.calls == [("t1-c3dpo-s0", ("model.type=c3dpo", "train.inplane_augment=true",
                                                 "loss.canon_samples=4", "loss.canonicalisation=1", "train.seed=0"))]
    assert "c3dpo: loss.canonicalisation=1, chosen by select-c3dpo (selection incomplete: no result for 10)" \
        in capsys.readouterr().out


def test_all_runs_the_selection_first_and_dry_run_runs_nothing(tmp_path, capsys):
    dry = FakeRunner()
    assert cli.main(["all", "--seeds", "0", "--dry-run", "--out-dir", str(tmp_path)], run=dry) == 0
    assert dry.calls == [] and not any(tmp_path.iterdir())
    out = capsys.readouterr().out
    assert "dvc --wait-for-lock exp run --temp -n t1-no_canon-s0 -S loss.canonicalisation=0 -S train.seed=0" in out
    assert "-n parts-16-s0 -S model.parts=16 -S train.seed=0" in out

    fake = FakeRunner()
    assert cli.main(["all", "--seeds", "0", "--out-dir", str(tmp_path)], run=fake) == 0
    names = [name for name, _ in fake.calls]
    assert names[:4] == ["c3dpo-w0.01", "c3dpo-w0.1", "c3dpo-w1", "c3dpo-w10"]
    assert len(names) == 4 + len(table1.TABLE1) + len(parts.PARTS)
    assert "loss.canonicalisation=0.01" in dict(fake.calls)["t1-c3dpo-s0"]  # the selection just made
    for f in ("table1.csv", "table1.md", "parts_curve.csv", "parts_curve.md", "parts_curve.png",
              "c3dpo_selection.csv", "c3dpo_selection.md", "runs.json"):
        assert (tmp_path / f).is_file(), f


def test_thread_environment_shares_the_cores():
    assert runner.thread_env(2, 1, {"PATH": "/bin"}) == {"PATH": "/bin", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    assert runner.thread_env(16, 3, {})["OMP_NUM_THREADS"] == "5"
    assert runner.thread_env(2, 4, {})["MKL_NUM_THREADS"] == "1"


# --- the DVC side, through a fake process runner ---------------------------------------------------

def _exp(name, state, mpjpe=None, parts=5):
    data = None if mpjpe is None else {
        "params": {"params.yaml": {"data": {"model": {"parts": parts}, "train": {"seed": 0}}}},
        "metrics": {"metrics/eval.json": {"data": {"mpjpe_mm": mpjpe, "re14_mm": 60.0, "xy_mm": 9.0, "z_mm": 70.0,
                                                   "flat_mpjpe_mm": 195.6, "parts_used": 4,
                                                   "regions_distinct": True}},
                    "metrics/train/metrics.json": {"data": {"loss": 0.2}}}}
    executor = None if state == "done" else {"state": state, "name": None, "local": None}
    return {"name": name, "executor": executor, "revs": [{"rev": "b" * 40, "name": name, "data": data}]}


def _exp_show(*experiments):
    return json.dumps([{"rev": "workspace", "name": None, "data": {}},
                       {"rev": "a" * 40, "name": "main", "data": {}, "experiments": list(experiments) or None}])


class FakeProcesses:
    """Answers DVC's and git's command lines from a script of ``dvc exp show`` outputs."""

    def __init__(self, shows, fail=()):
        self.shows, self.fail, self.calls = list(shows), set(fail), []

    def __call__(self, argv, env=None, log=None):
        self.calls.append((tuple(argv), env, log))
        if argv[:4] == ["dvc", "exp", "show", "--json"]:
            return runner.Called(0, self.shows.pop(0) if len(self.shows) > 1 else self.shows[0])
        if argv[:3] == ["dvc", "queue", "status"]:
            return runner.Called(0, "Task  Name  Created  Status\n\nWorker status: 1 active, 0 idle\n")
        if log is not None:
            log.write_text("training log\n")
        return runner.Called(1 if tuple(argv) in self.fail else 0, "", "")


def test_dvc_run_removes_a_stale_experiment_runs_it_in_a_temp_workspace_and_reads_its_metrics(tmp_path):
    procs = FakeProcesses([_exp_show(_exp("parts-5-s0", "failed")), _exp_show(),
                           _exp_show(_exp("other", "done", 1.0), _exp("parts-5-s0", "done", 150.5))])
    env = runner.thread_env(2, 1, {})
    dvc = runner.Dvc(env=env, call=procs, log_dir=tmp_path)
    metrics = dvc.run("parts-5-s0", ("model.parts=5", "train.seed=0"))
    assert metrics == {"mpjpe_mm": 150.5, "re14_mm": 60.0, "xy_mm": 9.0, "z_mm": 70.0, "flat_mpjpe_mm": 195.6,
                       "parts_used": 4, "regions_distinct": True}
    argvs = [c[0] for c in procs.calls]
    assert ("dvc", "--wait-for-lock", "exp", "remove", "parts-5-s0") in argvs
    run_call = next(c for c in procs.calls if "run" in c[0])
    assert run_call[0] == ("dvc", "--wait-for-lock", "exp", "run", "--temp", "-n", "parts-5-s0",
                           "-S", "model.parts=5", "-S", "train.seed=0")
    assert run_call[1]["OMP_NUM_THREADS"] == "2" and run_call[2] == tmp_path / "parts-5-s0.log"


def test_dvc_run_failure_names_the_log(tmp_path):
    argv = ("dvc", "--wait-for-lock", "exp", "run", "--temp", "-n", "t1-dp3d-s0", "-S", "train.seed=0")
    dvc = runner.Dvc(env={}, call=FakeProcesses([_exp_show()], fail={argv}), log_dir=tmp_path)
    with pytest.raises(runner.RunFailed, match=r"exited with 1 \(log: .*t1-dp3d-s0\.log\)"):
        dvc.run("t1-dp3d-s0", ("train.seed=0",))


def test_queued_runs_start_workers_and_report_each_as_it_finishes(tmp_path):
    a = runner.Run("parts-1-s0", ("1", "0"), ("model.parts=1", "train.seed=0"), "parts")
    b = runner.Run("parts-2-s0", ("2", "0"), ("model.parts=2", "train.seed=0"), "parts")
    shows = [_exp_show(), _exp_show(), _exp_show(),  # finished earlier? forget(a), forget(b): nothing there
             _exp_show(_exp(a.name, "queued"), _exp(b.name, "queued")),
             _exp_show(_exp(a.name, "running"), _exp(b.name, "queued")),
             _exp_show(_exp(a.name, "done", 140.0), _exp(b.name, "running")),
             _exp_show(_exp(a.name, "done", 140.0), _exp(b.name, "failed"))]
    procs = FakeProcesses(shows)
    ticks = iter(range(0, 1000, 10))
    execute = runner.Dvc(env=runner.thread_env(16, 2, {}), call=procs, log_dir=tmp_path).queued(
        2, poll_s=0, sleep=lambda s: None, clock=lambda: next(ticks))
    outcomes = list(execute([a, b]))
    assert [(o.run.name, o.metrics and o.metrics["mpjpe_mm"]) for o in outcomes] == [(a.name, 140.0), (b.name, None)]
    assert "dvc queue logs parts-2-s0" in outcomes[1].error
    argvs = [c[0] for c in procs.calls]
    assert ("dvc", "--wait-for-lock", "exp", "run", "--queue", "-n", a.name, "-S", "model.parts=1",
            "-S", "train.seed=0") in argvs
    start = next(c for c in procs.calls if c[0][2:4] == ("queue", "start"))
    assert start[0] == ("dvc", "--wait-for-lock", "queue", "start", "-j", "2")
    assert start[2] == tmp_path / "queue_start.log"  # a file: the worker daemons must not hold a pipe
    assert start[1]["OMP_NUM_THREADS"] == start[1]["MKL_NUM_THREADS"] == "8"


def test_queue_without_workers_is_reported_not_waited_for_forever(tmp_path):
    class NoWorkers(FakeProcesses):
        def __call__(self, argv, env=None, log=None):
            if argv[:3] == ["dvc", "queue", "status"]:
                return runner.Called(0, "No experiment tasks in the queue.\n\nWorker status: 0 active, 0 idle\n")
            return super().__call__(argv, env, log)

    run = runner.Run("parts-3-s0", ("3", "0"), ("model.parts=3", "train.seed=0"), "parts")
    procs = NoWorkers([_exp_show(), _exp_show(), _exp_show(_exp(run.name, "queued"))])
    outcomes = list(runner.Dvc(env={}, call=procs, log_dir=tmp_path).queued(1, poll_s=0, sleep=lambda s: None)([run]))
    assert len(outcomes) == 1 and "no worker" in outcomes[0].error
    assert runner.parse_workers("Worker status: 2 active, 1 idle") == 3 and runner.parse_workers("nothing") is None


def test_tasks_left_in_the_queue_are_removed_before_queueing_again_and_a_running_one_is_not_queued_twice(tmp_path):
    """A stopped queue or a killed script leaves queued tasks based on an older commit, which `dvc exp show` of the
    new one does not list: queueing the run again would run it twice (seen: 16 tasks for 9 runs)."""
    status = ("Task     Name                  Created    Status\n"
              "e21f43c  parts-1-s0            10:21 PM   Running\n"
              "6d45b78  parts-2-s0            10:22 PM   Queued\n"
              "3ab0897  parts-2-s0            11:15 PM   Queued\n"
              "cd95059  parts-3-s0            09:07 PM   Success\n\n"
              "Worker status: 1 active, 0 idle\n")
    assert runner.parse_queue(status) == [("e21f43c", "parts-1-s0", "Running"), ("6d45b78", "parts-2-s0", "Queued"),
                                          ("3ab0897", "parts-2-s0", "Queued"), ("cd95059", "parts-3-s0", "Success")]

    class LeftTasks(FakeProcesses):
        def __call__(self, argv, env=None, log=None):
            if argv[:3] == ["dvc", "queue", "status"]:
                self.calls.append((tuple(argv), env, log))
                return runner.Called(0, status)
            return super().__call__(argv, env, log)

    running = runner.Run("parts-1-s0", ("1", "0"), ("model.parts=1", "train.seed=0"), "parts")
    left = runner.Run("parts-2-s0", ("2", "0"), ("model.parts=2", "train.seed=0"), "parts")
    procs = LeftTasks([_exp_show(), _exp_show(), _exp_show(_exp(left.name, "done", 150.0, parts=2))])
    outcomes = list(runner.Dvc(env={}, call=procs, log_dir=tmp_path).queued(1, poll_s=0, sleep=lambda s: None)(
        [running, left]))
    assert "already running in the DVC queue (task e21f43c)" in outcomes[0].error
    assert (outcomes[1].run.name, outcomes[1].metrics["mpjpe_mm"]) == (left.name, 150.0)
    argvs = [c[0] for c in procs.calls]
    assert ("dvc", "--wait-for-lock", "queue", "remove", "6d45b78", "3ab0897") in argvs
    assert not any(a[:4] == ("dvc", "--wait-for-lock", "exp", "run") and running.name in a for a in argvs)
    assert any(a[:4] == ("dvc", "--wait-for-lock", "exp", "run") and left.name in a for a in argvs)


def test_dvc_yaml_plots_the_parts_curve():
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    entry = next(p["metrics/paper/parts_curve.csv"] for p in plots if "metrics/paper/parts_curve.csv" in p)
    assert (entry["x"], entry["y"]) == ("parts", "mpjpe_mm")
    assert parts.CSV.file == "parts_curve.csv" and cli.OUT_DIR == ROOT / "metrics" / "paper"


def test_queued_runs_finished_earlier_are_read_back_not_rerun(tmp_path):
    """A run that DVC already finished with the same overrides (e.g. the script was killed while it
    waited) is read back from `dvc exp show`; a finished one with other params is removed and rerun."""
    same = runner.Run("parts-1-s0", ("1", "0"), ("model.parts=1", "train.seed=0"), "parts")
    other = runner.Run("parts-2-s0", ("2", "0"), ("model.parts=2", "train.seed=0"), "parts")
    done = _exp_show(_exp(same.name, "done", 140.0, parts=1), _exp(other.name, "done", 150.0, parts=7))
    procs = FakeProcesses([done, done, _exp_show(), _exp_show(_exp(other.name, "done", 151.0, parts=2))])
    outcomes = list(runner.Dvc(env={}, call=procs, log_dir=tmp_path).queued(1, poll_s=0, sleep=lambda s: None)(
        [same, other]))
    assert [(o.run.name, o.metrics["mpjpe_mm"]) for o in outcomes] == [(same.name, 140.0), (other.name, 151.0)]
    argvs = [c[0] for c in procs.calls]
    assert not any(same.name in a and "run" in a for a in argvs)
    assert ("dvc", "--wait-for-lock", "exp", "remove", other.name) in argvs


def test_default_data_tables_have_their_own_files_names_and_grid(tmp_path, monkeypatch):
    """`--data default`: Table 1, the parts curve and the selection on the default data go to *_default.csv, their
    runs named def-... with one thread each, C3DPO's grid below 0.01 and Table 1 using the default selection."""
    monkeypatch.setattr("experiments.data.ALONE", ALONE)
    fake = FakeRunner()
    assert cli.main(["all", "--data", "default", "--seeds", "0", "--out-dir", str(tmp_path)], run=fake) == 0
    assert {p.name for p in tmp_path.glob("*.csv")} == {"c3dpo_selection_default.csv", "table1_default.csv",
                                                        "parts_curve_default.csv"}
    assert (tmp_path / "parts_curve_default.png").is_file() and (tmp_path / "table1_default.md").is_file()
    calls = dict(fake.calls)
    assert all(name.startswith("def-") and overrides[0] == "common.threads=1" for name, overrides in calls.items())
    weights = sorted(float(o.split("=")[1]) for n, ov in calls.items() if "c3dpo-w" in n for o in ov
                     if o.startswith("loss.canonicalisation="))
    assert weights[0] < 0.01 and weights == sorted(selection.DEFAULT_SELECTION_WEIGHTS)
    chosen = selection.chosen_weight(runner.read_rows(tmp_path / "c3dpo_selection_default.csv"))
    assert f"loss.canonicalisation={chosen:g}" in calls["def-t1-c3dpo-s0"]
    assert "--data default" in runner.rerun_hint(table1.runs([0], 0.01, data=DATA["default"])[0])
    # both are the network's prediction alone, named so: a later default evaluation does not change what a row means
    assert all("eval.refine_steps=0" in overrides for overrides in calls.values())


def test_refined_tables_train_as_default_and_refine_every_test_prediction(tmp_path, monkeypatch):
    """`--data refined`: the default data's training, every run's test predictions refined with REFINE's settings
    named, files *_refined.csv and runs ref-...; no selection of its own: its c3dpo row takes the weight the default
    data's selection chose (read from c3dpo_selection_default.csv, run first when absent)."""
    monkeypatch.setattr("experiments.data.ALONE", ALONE)
    fake = FakeRunner()
    assert cli.main(["all", "--data", "refined", "--seeds", "0", "--out-dir", str(tmp_path)], run=fake) == 0
    assert {p.name for p in tmp_path.glob("*.csv")} == {"c3dpo_selection_default.csv", "table1_refined.csv",
                                                        "parts_curve_refined.csv"}
    calls = dict(fake.calls)
    trained = {n: o for n, o in calls.items() if not n.startswith("def-c3dpo-w")}
    assert trained and all(n.startswith("ref-") for n in trained)
    assert all(o[:4] == ("common.threads=1", *REFINE) for o in trained.values())
    assert all("eval.refine_steps=0" in o for n, o in calls.items() if n.startswith("def-c3dpo-w"))
    chosen = selection.chosen_weight(runner.read_rows(tmp_path / "c3dpo_selection_default.csv"))
    assert f"loss.canonicalisation={chosen:g}" in calls["ref-t1-c3dpo-s0"]
    # the default data's table and the refined one differ only in the evaluation
    default = {r.name.removeprefix("def-"): r.overrides for r in table1.runs([0], chosen, data=DATA["default"])}
    refined = {r.name.removeprefix("ref-"): r.overrides for r in table1.runs([0], chosen, data=DATA["refined"])}
    assert default.keys() == refined.keys()
    assert all([o for o in default[k] if not o.startswith("eval.")] == [o for o in refined[k]
               if not o.startswith("eval.")] for k in default)


# --- the script: a shim over the package, its commands as they were -------------------------------------------

def _script(*args: str) -> subprocess.CompletedProcess:
    """``python scripts/paper_experiments.py ARGS`` as documented: from the repository root, no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "scripts/paper_experiments.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_script_lists_every_subcommand():
    res = _script("--help")
    assert res.returncode == 0, res.stderr
    choices = "{table1,parts,select-c3dpo,sources,robust,summarise,all}"
    assert choices in res.stdout and set(choices.strip("{}").split(",")) == set(cli.COMMANDS)
    for option in ("--seeds", "--data", "--only", "--dry-run", "--jobs", "--cores", "--out-dir", "--poll"):
        assert option in res.stdout


# the runs `python scripts/paper_experiments.py all --data default --dry-run` printed before the script became the
# package experiments/ (at b2691b0, on an empty --out-dir), in order; since test-time refinement became the default,
# each with `-S eval.refine_steps=0` (the evaluation those rows were made with) after the data's own overrides
SEEDS = ("s0", "s1", "s2")
DEFAULT_ALL = ([f"def-c3dpo-w{w}" for w in ("0.001", "0.003", "0.01", "0.1")]
               + [f"def-t1-{e}-{s}" for e in ("dp3d", "dp3d_paper", "no_canon", "no_arap", "no_entropy", "no_parts",
                                              "c3dpo") for s in SEEDS]
               + [f"def-parts-{p}-{s}" for p in (1, 2, 3, 5, 10, 16) for s in SEEDS])


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_the_scripts_dry_run_of_all_on_the_default_data_prints_the_commands_it_did(tmp_path, jobs):
    res = _script("all", "--data", "default", "--dry-run", "--cores", "2", "--jobs", jobs, "--out-dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert [line for line in lines if not line.startswith("  ")] == [
        "c3dpo_selection_default.csv: 4 runs planned, 0 done, 4 to run",
        "c3dpo: loss.canonicalisation=0.1 (the default: no selection results yet)",
        "table1_default.csv: 21 runs planned, 0 done, 21 to run",
        "parts_curve_default.csv: 18 runs planned, 0 done, 18 to run"]
    commands = [line.strip() for line in lines if line.startswith("  ")]
    runs = [c for c in commands if " exp run " in c]
    assert [c.split(" -n ")[1].split()[0] for c in runs] == DEFAULT_ALL
    if jobs == "1":
        assert len(commands) == len(DEFAULT_ALL)
        assert runs[0] == ("OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 dvc --wait-for-lock exp run --temp -n def-c3dpo-w0.001 "
                           "-S common.threads=1 -S eval.refine_steps=0 -S model.type=c3dpo -S train.inplane_augment=true "
                           "-S loss.canon_samples=4 -S train.val_share=0.1 -S eval.split=val -S train.seed=0 "
                           "-S loss.canonicalisation=0.001")
        assert ("OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 dvc --wait-for-lock exp run --temp -n def-t1-c3dpo-s2 "
                "-S common.threads=1 -S eval.refine_steps=0 -S model.type=c3dpo -S train.inplane_augment=true -S loss.canon_samples=4 "
                "-S loss.canonicalisation=0.1 -S train.seed=2") in runs
        assert runs[-1] == ("OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 dvc --wait-for-lock exp run --temp -n def-parts-16-s2 "
                            "-S common.threads=1 -S eval.refine_steps=0 -S model.parts=16 -S train.seed=2")
    else:  # each table queued, then its workers started
        assert [c for c in commands if " exp run " not in c] == [
            "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 dvc --wait-for-lock queue start -j 2"] * 3
        assert runs[-1] == ("dvc --wait-for-lock exp run --queue -n def-parts-16-s2 -S common.threads=1 "
                            "-S eval.refine_steps=0 -S model.parts=16 -S train.seed=2")
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


def test_dvc_run_finds_a_run_based_on_a_commit_made_since_the_script_started(tmp_path):
    """A serial --temp run starts from the commit checked out then: when the baseline's experiments do not hold it,
    HEAD's are read (``dvc exp show`` without ``--rev``)."""
    procs = FakeProcesses([_exp_show(), _exp_show(), _exp_show(_exp("src-exact-s1", "done", 117.3))])
    dvc = runner.Dvc(env={}, call=procs, log_dir=tmp_path, baseline="c" * 40)
    assert dvc.run("src-exact-s1", ("train.seed=1",))["mpjpe_mm"] == 117.3
    shows = [c[0] for c in procs.calls if c[0][:3] == ("dvc", "exp", "show")]
    assert shows[-2][-2:] == ("--rev", "c" * 40) and "--rev" not in shows[-1]


def test_baseline_names_the_commit_whose_runs_are_read_back_and_recorded(monkeypatch):
    """`--baseline REV`: runs queued before later commits are found under the commit they are based on, and the
    runs' git_rev says which; a name git does not know is an error."""
    head = subprocess.run(["git", "rev-parse", "HEAD~1"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode:
        pytest.skip("not a git checkout with history")
    monkeypatch.chdir(ROOT)
    ctx = cli.make_context(cli.parse_args(["table1", "--baseline", "HEAD~1", "--jobs", "2"]), None)
    assert ctx.provenance()["git_rev"] == head.stdout.strip()
    with pytest.raises(SystemExit, match="--baseline no-such-rev: not a git revision"):
        cli.make_context(cli.parse_args(["table1", "--baseline", "no-such-rev"]), None)
