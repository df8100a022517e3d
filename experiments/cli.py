"""The command line of the experiments (``python scripts/paper_experiments.py``, ``python -m experiments``): which
tables and runs a subcommand plans, how they run (DVC, serially or queued; a fake in tests), the summaries."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Callable

import experiments
from experiments import parts, robust, selection, sources, table1
from experiments.data import DATA
from experiments.runner import (DVC, POLL_S, ROOT, THREAD_VARS, Context, Dvc, Run, Table, atomic_write,
                                exp_run_argv, git_provenance, only, read_rows, report, run_table, serially,
                                thread_env)

OUT_DIR = ROOT / "metrics" / "paper"
DEFAULT_SEEDS = (0, 1, 2)
COMMANDS = ["table1", "parts", "select-c3dpo", "sources", "robust", "summarise", "all"]


def summarise(out_dir: Path) -> list[Path]:
    """Rewrite the Markdown summaries and the figure from the CSVs there are; the files written."""
    written = []
    tables = [(sources.CSV, sources.markdown), (robust.CSV, robust.markdown)]
    for data in DATA.values():
        tables += [(data.table(table1.CSV), partial(table1.markdown, title=f"Table 1, {data.name} data")),
                   (data.table(parts.CSV), partial(parts.markdown, data=data.name)),
                   (data.table(selection.CSV), selection.markdown)]
    for table, render in tables:
        rows = read_rows(out_dir / table.file)
        if rows:
            md = out_dir / table.file.replace(".csv", ".md")
            atomic_write(md, render(rows))
            written.append(md)
    for data in DATA.values():
        rows = read_rows(out_dir / data.table(parts.CSV).file)
        if rows:
            png = out_dir / data.table(parts.CSV).file.replace(".csv", ".png")
            parts.png(rows, png, data.name)
            written.append(png)
    return written


def parse_seeds(values: list[str]) -> list[int]:
    """``--seeds 0 1 2`` or ``--seeds 0,1,2``."""
    return [int(s) for v in values for s in v.split(",") if s.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=experiments.__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=experiments.__doc__)
    ap.add_argument("command", choices=COMMANDS)
    ap.add_argument("--seeds", nargs="+", default=[",".join(map(str, DEFAULT_SEEDS))],
                    help="train.seed values (default 0 1 2)")
    ap.add_argument("--data", choices=list(DATA), default="mild",
                    help="table1, parts, select-c3dpo: the mild corruption they were first measured on (default), "
                         "the default data (files *_default.csv; both the network's prediction alone) or the default "
                         "data refined at test time (files *_refined.csv; C3DPO's weight from the default data's "
                         "selection)")
    ap.add_argument("--only", help="run only the runs whose name contains this text, e.g. t1-no_arap or -s1")
    ap.add_argument("--dry-run", action="store_true", help="print the commands of the runs to do, run nothing")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (> 1: through DVC's queue)")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                    help="cores shared by the jobs: OMP/MKL threads = max(1, cores // jobs)")
    ap.add_argument("--out-dir", type=Path, default=OUT_DIR, help="where the CSVs, summaries and figure go")
    ap.add_argument("--poll", type=float, default=POLL_S, help="seconds between queue polls (--jobs > 1)")
    ap.add_argument("--baseline", default="HEAD",
                    help="the commit whose DVC experiments are read back and recorded as the runs' git_rev (default "
                         "HEAD; runs queued before later commits are based on the commit checked out then)")
    args = ap.parse_args(argv)
    args.seeds = parse_seeds(args.seeds)
    if args.jobs < 1:
        ap.error("--jobs must be at least 1")
    return args


def make_context(args: argparse.Namespace, run: Callable | None) -> Context:
    """The context: ``run`` (tests: a fake) runs serially; else DVC, queued when ``--jobs`` > 1."""
    env = thread_env(args.cores, args.jobs)
    prefix = " ".join(f"{v}={env[v]}" for v in THREAD_VARS)
    if run is not None:
        return Context(args.out_dir, serially(run), lambda: {}, args.dry_run)
    rev = subprocess.run(["git", "rev-parse", args.baseline], capture_output=True, text=True)
    baseline = rev.stdout.strip() if rev.returncode == 0 else None
    if baseline is None and args.baseline != "HEAD":
        raise SystemExit(f"--baseline {args.baseline}: not a git revision here")
    dvc = Dvc(env=env, baseline=baseline)
    provenance = git_provenance if args.baseline == "HEAD" else lambda: {**git_provenance(), "git_rev": baseline}
    if args.jobs == 1:
        return Context(args.out_dir, serially(dvc.run), provenance, args.dry_run,
                       lambda runs: [f"{prefix} {shlex.join(exp_run_argv(r.name, r.overrides))}" for r in runs])
    describe = lambda runs: ([shlex.join(exp_run_argv(r.name, r.overrides, queue=True)) for r in runs]  # noqa: E731
                             + ([f"{prefix} {shlex.join([*DVC, 'queue', 'start', '-j', str(args.jobs)])}"]
                                if runs else []))
    return Context(args.out_dir, dvc.queued(args.jobs, args.poll), provenance, args.dry_run, describe)


def plan(command: str, args: argparse.Namespace) -> list[tuple[Table, list[Run]]]:
    """The tables and runs of a subcommand (``all``: selection first, so table1 uses its weight)."""
    data, chooser = DATA[args.data], DATA[args.data].chooser
    if command == "select-c3dpo":
        return [(chooser.table(selection.CSV), only(selection.runs(data=chooser), args.only))]
    if command == "table1":
        weight = selection.c3dpo_weight(args.out_dir / chooser.table(selection.CSV).file)
        return [(data.table(table1.CSV), only(table1.runs(args.seeds, weight, data=data), args.only))]
    if command == "parts":
        return [(data.table(parts.CSV), only(parts.runs(args.seeds, data=data), args.only))]
    if command == "sources":
        return [(sources.CSV, only(sources.runs(args.seeds), args.only))]
    if command == "robust":
        return [(robust.CSV, only(robust.runs(args.seeds), args.only))]
    return []


def main(argv: list[str] | None = None, run: Callable[[str, tuple[str, ...]], dict] | None = None) -> int:
    """Run a subcommand; ``run(name, overrides) -> metrics`` replaces DVC (tests). The exit status."""
    args = parse_args(argv)
    ctx = make_context(args, run)
    if run is None and not args.dry_run and args.command != "summarise" and git_provenance()["dirty"]:
        print("warning: pipeline/, stages/, params.yaml or dvc.yaml have uncommitted changes; every run "
              "uses the workspace as it is when it starts", file=sys.stderr)
    commands = ["select-c3dpo", "table1", "parts"] if args.command == "all" else [args.command]
    failed = []
    for command in commands:
        chooser = DATA[args.data].chooser
        chosen = args.out_dir / chooser.table(selection.CSV).file
        if command == "table1":
            print(selection.note(chosen, selection.WEIGHTS[chooser.name]), flush=True)
        for table, runs in plan(command, args):  # planned now: table1 reads the selection just made
            failed += run_table(table, runs, ctx)
        if command == "select-c3dpo" and not args.dry_run:
            print(selection.note(chosen, selection.WEIGHTS[chooser.name]), flush=True)
    if not args.dry_run:
        for path in summarise(args.out_dir):
            print(f"wrote {path}")
    return report(failed)
