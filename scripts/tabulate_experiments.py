"""Markdown table of DVC experiments: chosen params and metrics, one row per experiment.

Reads the JSON of ``dvc exp show --json`` (DVC 3.x) from a file, from stdin (``-``), or by running
it, and prints a Markdown table, e.g. docs/results.md's Table-1-like ablation table and the parts curve::

    # queue the runs (names become the rows' labels), run them, tabulate
    dvc exp run --queue -n dp3d
    dvc exp run --queue -n no-arap -S loss.arap=0
    dvc queue start && dvc queue status
    dvc exp show --json > exps.json
    python scripts/tabulate_experiments.py exps.json --params model.type loss.arap \\
        --metrics mpjpe_mm re14_mm flat_mpjpe_mm
    # the parts curve, sorted by the number of parts
    dvc exp show --json | python scripts/tabulate_experiments.py - --params model.parts \\
        --metrics mpjpe_mm re14_mm --sort-by model.parts --only dp3d-parts-

The paper's Table 1 and parts curve with several seeds (CSV, mean ± std, figure) are made by
``scripts/paper_experiments.py`` instead.

A param is a dotted key of ``params.yaml`` (``model.parts``); a metric is a key of
``metrics/eval.json`` (``mpjpe_mm``) or ``FILE:KEY`` for another metrics file. Rows: every
baseline commit and its successful experiments (queued, running and failed ones have no results
and are left out unless ``--all``); the workspace row only with ``--workspace``.

``dvc exp show --json`` is a list of experiment states::

    [{"rev": "workspace" | <sha>, "name": <branch or null>, "error": null,
      "data": {"rev", "timestamp", "params": {"params.yaml": {"data": {...}}},
               "metrics": {"metrics/eval.json": {"data": {...}}}, "deps", "outs", "meta"},
      "experiments": [{"name": <exp name>, "executor": {"state": "success" | "queued" | ...} | null,
                       "revs": [<experiment state, as above>]}] | null}]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

DEFAULT_METRICS_FILE = "metrics/eval.json"
PARAMS_FILE = "params.yaml"
_MISSING = object()


def flatten(exp_show: list[dict], workspace: bool = False, everything: bool = False) -> list[dict]:
    """Rows ``{"name", "rev", "kind", "state", "params", "metrics"}`` from ``dvc exp show --json``.

    ``params``: the params.yaml data; ``metrics``: {file: data}. ``kind``: workspace, baseline or
    experiment. Experiments whose executor is not ``success`` are skipped unless ``everything``.
    """
    rows = []

    def row(state: dict, kind: str, name: str | None, exec_state: str | None) -> dict:
        data = state.get("data") or {}
        params = ((data.get("params") or {}).get(PARAMS_FILE) or {}).get("data") or {}
        metrics = {f: (v or {}).get("data") or {} for f, v in (data.get("metrics") or {}).items()}
        rev = state.get("rev") or ""
        return {"name": name or state.get("name") or rev[:7], "rev": rev, "kind": kind, "state": exec_state,
                "params": params, "metrics": metrics}

    for base in exp_show:
        if base.get("rev") == "workspace":
            if workspace:
                rows.append(row(base, "workspace", "workspace", None))
            continue
        rows.append(row(base, "baseline", base.get("name"), None))
        for rng in base.get("experiments") or []:
            state = ((rng.get("executor") or {}).get("state")) or "success"
            if state != "success" and not everything:
                continue
            revs = rng.get("revs") or []
            if revs:
                rows.append(row(revs[0], "experiment", rng.get("name") or revs[0].get("name"), state))
    return rows


def lookup(row: dict, key: str, what: str) -> Any:
    """A param (dotted key into params.yaml) or a metric (``KEY`` of eval.json or ``FILE:KEY``)."""
    if what == "param":
        node: Any = row["params"]
        path = key.split(".")
    else:
        file, _, name = key.rpartition(":")
        node = row["metrics"].get(file or DEFAULT_METRICS_FILE, {})
        path = name.split(".")
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _cell(value: Any, precision: int) -> str:
    if value is _MISSING or value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.{precision}f}"
    return str(value)


def _sort_key(value: Any):
    if value is _MISSING or value is None:
        return (2, 0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value, "")
    return (1, 0, str(value))


def markdown_table(rows: list[dict], params: list[str], metrics: list[str], sort_by: str | None = None,
                   precision: int = 1, only: str | None = None) -> str:
    """The Markdown table (header, alignment row, one line per row)."""
    if only:
        rows = [r for r in rows if only in r["name"]]
    if sort_by:
        # a param when listed as one or found in some row's params.yaml, else a metric
        is_param = sort_by in params or (sort_by not in metrics and
                                         any(lookup(r, sort_by, "param") is not _MISSING for r in rows))
        what = "param" if is_param else "metric"
        rows = sorted(rows, key=lambda r: _sort_key(lookup(r, sort_by, what)))
    header = ["experiment", *params, *(m.rpartition(":")[2] for m in metrics)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|"]
    for r in rows:
        cells = [r["name"]] + [_cell(lookup(r, p, "param"), precision) for p in params]
        cells += [_cell(lookup(r, m, "metric"), precision) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, stdin=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="?", help="file of `dvc exp show --json`; '-' reads stdin; absent runs it")
    ap.add_argument("--params", nargs="*", default=["model.type", "model.parts"], help="dotted params.yaml keys")
    ap.add_argument("--metrics", nargs="*", default=["mpjpe_mm", "re14_mm", "flat_mpjpe_mm"],
                    help=f"keys of {DEFAULT_METRICS_FILE}, or FILE:KEY")
    ap.add_argument("--sort-by", help="a param or metric to sort the rows by (ascending)")
    ap.add_argument("--only", help="keep rows whose name contains this text")
    ap.add_argument("--precision", type=int, default=1, help="decimals of float cells")
    ap.add_argument("--workspace", action="store_true", help="add the workspace row")
    ap.add_argument("--no-baseline", action="store_true", help="leave out the baseline commits' rows")
    ap.add_argument("--all", action="store_true", help="keep queued, running and failed experiments too")
    args = ap.parse_args(argv)

    if args.json == "-":
        text = (stdin or sys.stdin).read()
    elif args.json:
        with open(args.json) as fh:
            text = fh.read()
    else:
        text = subprocess.run(["dvc", "exp", "show", "--json"], check=True, capture_output=True, text=True).stdout
    try:
        exp_show = json.loads(text)
    except json.JSONDecodeError as e:
        raise SystemExit(f"not the JSON of `dvc exp show --json`: {e}") from None
    if not isinstance(exp_show, list):
        raise SystemExit("not the JSON of `dvc exp show --json`: expected a list of experiment states")
    rows = flatten(exp_show, workspace=args.workspace, everything=args.all)
    if args.no_baseline:
        rows = [r for r in rows if r["kind"] != "baseline"]
    out = markdown_table(rows, args.params, args.metrics, args.sort_by, args.precision, args.only)
    sys.stdout.write(out)
    return out


if __name__ == "__main__":
    main()
