"""Running the experiments' runs as DVC experiments: the runs and tables they fill (``Run``, ``Table``), the CSV
and ``runs.json`` files (atomic writes, resuming: ``split_done``), DVC run one at a time or through its queue
(``Dvc``), and what failed with the commands that rerun it."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from experiments.data import DATA

ROOT = Path(__file__).resolve().parents[1]
LOG_DIR = ROOT / ".dvc" / "tmp" / "paper_experiments"  # git-ignored scratch: full output of each run
SCRIPT = "python scripts/paper_experiments.py"
# keys of metrics/eval.json; regions_distinct: head, torso and arms on different parts (issue 26's target)
METRICS = ("mpjpe_mm", "re14_mm", "xy_mm", "z_mm", "flat_mpjpe_mm", "parts_used", "regions_distinct")
COUNTED = ("regions_distinct",)  # booleans among METRICS: a table counts them over seeds ("2 of 3"), not averages
REQUIRED = "mpjpe_mm"  # a run without it failed
SEED_OVERRIDE = "train.seed={seed}"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
POLL_S = 30.0
DVC = ("dvc", "--wait-for-lock")


def _load_script(name: str):
    """A module of scripts/ (not a package) by file, without touching sys.path."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


tabulate = _load_script("tabulate_experiments")


# --- plans ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Table:
    """A CSV of runs: its file name, the columns naming a run (``key``) and the metric columns; ``order``: the
    experiment names that come first, in this order (the others after them, alphabetically)."""

    file: str
    key: tuple[str, ...]
    metrics: tuple[str, ...]
    order: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return self.key + self.metrics


@dataclass(frozen=True)
class Run:
    """One DVC experiment: its name, its row's key values (as CSV text) and its ``-S`` overrides."""

    name: str
    key: tuple[str, ...]
    overrides: tuple[str, ...]
    command: str  # the subcommand of scripts/paper_experiments.py that plans it (for the rerun hint)


def num(value: float) -> str:
    """A number as written in overrides, names and CSV keys: 0.01, 0.1, 1, 10."""
    return f"{value:g}"


def seeded(prefix: str, experiments: dict[str, Iterable[str]], seeds: Iterable[int], base: Iterable[str],
           command: str) -> list[Run]:
    """Every experiment with every seed, named ``<prefix><experiment>-s<seed>``, keyed (experiment, seed), its
    overrides ``base``, the experiment's and ``train.seed``."""
    return [Run(f"{prefix}{exp}-s{seed}", (exp, str(seed)), (*base, *overrides, SEED_OVERRIDE.format(seed=seed)),
                command)
            for exp, overrides in experiments.items() for seed in seeds]


def only(runs: list[Run], text: str | None) -> list[Run]:
    """The runs whose name contains ``text`` (all without it)."""
    return [r for r in runs if not text or text in r.name]


# --- CSV and sidecar files -------------------------------------------------------------------------

def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path`` and rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV (text values), [] when it does not exist."""
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def csv_text(rows: list[dict[str, Any]], columns: Iterable[str]) -> str:
    """CSV text of ``rows`` with exactly ``columns``; missing values are empty cells."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _csv_cell(row.get(c)) for c in columns})
    return buf.getvalue()


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def row_key(row: dict[str, Any], table: Table) -> tuple[str, ...]:
    return tuple(str(row.get(k, "")) for k in table.key)


def sort_value(column: str, text: str, order: tuple[str, ...] = ()):
    """A key cell's sort key: experiments in ``order`` first, then by name; other columns by number, then text."""
    if column == "experiment":
        return (0, order.index(text), "") if text in order else (1, 0, text)
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0, text)


def upsert(rows: list[dict[str, Any]], table: Table, run: Run, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """``rows`` with the run's row added or replaced, sorted by the key columns."""
    new = dict(zip(table.key, run.key)) | {m: metrics.get(m) for m in table.metrics}
    kept = [r for r in rows if row_key(r, table) != run.key]
    return sorted(kept + [new], key=lambda r: [sort_value(k, str(r.get(k, "")), table.order) for k in table.key])


def load_sidecar(path: Path) -> dict[str, dict]:
    """``runs.json``: run name -> {overrides, git_rev, dirty, wall_s, finished}; {} when absent."""
    return json.loads(path.read_text()) if path.exists() else {}


def split_done(runs: list[Run], rows: list[dict[str, str]], sidecar: dict[str, dict],
               table: Table) -> tuple[list[Run], list[Run]]:
    """(to run, done): a run is done when its row is in the CSV and runs.json has its overrides."""
    keys = {row_key(r, table) for r in rows}
    todo, done = [], []
    for run in runs:
        same = (sidecar.get(run.name) or {}).get("overrides") == list(run.overrides)
        (done if run.key in keys and same else todo).append(run)
    return todo, done


# --- DVC ---------------------------------------------------------------------------------------------

def exp_run_argv(name: str, overrides: Iterable[str], queue: bool = False) -> list[str]:
    """``dvc exp run --temp`` (or ``--queue``) of one named experiment with its ``-S`` overrides."""
    argv = [*DVC, "exp", "run", "--queue" if queue else "--temp", "-n", name]
    for o in overrides:
        argv += ["-S", o]
    return argv


def thread_env(cores: int, jobs: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (os.environ) with OMP_NUM_THREADS and MKL_NUM_THREADS = max(1, cores // jobs)."""
    threads = str(max(1, cores // max(1, jobs)))
    return dict(os.environ if base is None else base) | {v: threads for v in THREAD_VARS}


def run_metrics(row: dict) -> dict[str, Any]:
    """METRICS of a flattened ``dvc exp show`` row (metrics/eval.json; absent ones are None)."""
    out = {}
    for m in METRICS:
        value = tabulate.lookup(row, m, "metric")
        out[m] = None if value is tabulate._MISSING else value
    return out


def find_experiment(exp_show: list[dict], name: str) -> dict | None:
    """The flattened row of the experiment called ``name`` (any state), None when absent."""
    for row in tabulate.flatten(exp_show, everything=True):
        if row["kind"] == "experiment" and row["name"] == name:
            return row
    return None


def same_overrides(row: dict, overrides: Iterable[str]) -> bool:
    """Whether an experiment row's params.yaml has every ``key=value`` of ``overrides`` (YAML values)."""
    import yaml

    for o in overrides:
        key, _, value = o.partition("=")
        if tabulate.lookup(row, key, "param") != yaml.safe_load(value):
            return False
    return True


def parse_workers(status_text: str) -> int | None:
    """Active + idle workers from ``dvc queue status``'s "Worker status: A active, I idle" line."""
    match = re.search(r"Worker status:\s*(\d+) active,\s*(\d+) idle", status_text)
    return int(match[1]) + int(match[2]) if match else None


def parse_queue(status_text: str) -> list[tuple[str, str, str]]:
    """(task id, name, status) of each task in ``dvc queue status``'s table (rows "e21f43c  ref-t1-dp3d-s2
    10:21 PM   Running")."""
    rows = re.findall(r"^([0-9a-f]{7,})\s+(\S+)\s.*?\b(Queued|Running|Success|Failed)\s*$", status_text, re.M)
    return [(task, name, status) for task, name, status in rows]


class RunFailed(Exception):
    """A run that did not produce its metrics (the message says why and where its log is)."""


@dataclass
class Called:
    """What a process call returns to the runner."""

    returncode: int
    stdout: str = ""
    stderr: str = ""


def call_process(argv: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> Called:
    """Run ``argv`` in the repository; with ``log``, its stdout and stderr go to that file."""
    if log is None:
        p = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
        return Called(p.returncode, p.stdout, p.stderr)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        p = subprocess.run(argv, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, text=True)
    return Called(p.returncode)


@dataclass
class Outcome:
    """A finished run: its metrics or its error, and its wall time in seconds."""

    run: Run
    metrics: dict[str, Any] | None
    error: str | None
    wall_s: float


def serially(run: Callable[[str, tuple[str, ...]], dict], clock: Callable[[], float] = time.monotonic):
    """An executor running one run after the other through ``run(name, overrides) -> metrics``."""
    def execute(runs: list[Run]) -> Iterator[Outcome]:
        for r in runs:
            start = clock()
            try:
                metrics = run(r.name, r.overrides)
                if metrics.get(REQUIRED) is None:
                    raise RunFailed(f"no {REQUIRED} in its metrics/eval.json")
                yield Outcome(r, metrics, None, clock() - start)
            except Exception as e:  # noqa: BLE001: any failure is reported and the others still run
                yield Outcome(r, None, f"{type(e).__name__}: {e}" if not isinstance(e, RunFailed) else str(e),
                              clock() - start)
    return execute


@dataclass
class Dvc:
    """The DVC commands the runs need, through ``call`` (a process runner: injectable)."""

    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    call: Callable[..., Called] = call_process
    log_dir: Path = LOG_DIR
    baseline: str | None = None  # the commit the runs are based on (None: HEAD, whatever it is then)

    def exp_show(self, head: bool = False) -> list[dict]:
        """``dvc exp show --json`` (experiments of the baseline commit, queued and failed ones included), so
        commits made while the runs go on do not hide them; ``head``: of the commit checked out now."""
        rev = ["--rev", self.baseline] if self.baseline and not head else []
        res = self.call(["dvc", "exp", "show", "--json", *rev], env=self.env)
        if res.returncode:
            raise RunFailed(f"dvc exp show failed: {res.stderr.strip()[-500:]}")
        return json.loads(res.stdout)

    def forget(self, name: str) -> None:
        """Remove an earlier experiment called ``name`` (DVC refuses to reuse a name; the CSV, not
        DVC, records which runs are done)."""
        for _ in range(5):  # a name can be both a finished and a failed queued experiment
            if find_experiment(self.exp_show(), name) is None:
                return
            print(f"  removing the earlier DVC experiment {name}", flush=True)
            res = self.call([*DVC, "exp", "remove", name], env=self.env)
            if res.returncode:
                raise RunFailed(f"dvc exp remove {name} failed: {res.stderr.strip()[-500:]}")
        raise RunFailed(f"could not remove the earlier DVC experiment {name}")

    def unqueue(self, name: str, tasks: list[tuple[str, str, str]]) -> None:
        """Removes tasks called ``name`` still waiting in the DVC queue (``tasks``: :func:`parse_queue`'s; left by a
        stopped queue or a killed script, and based on an older commit, so ``dvc exp show`` of this one does not list
        them: they would run twice); refuses when one is running."""
        running = [task for task, n, status in tasks if n == name and status == "Running"]
        if running:
            raise RunFailed(f"{name} is already running in the DVC queue (task {running[0]}): wait for it to finish "
                            f"(then rerun this command, which reads it back) or stop it with `dvc queue kill {name}`")
        waiting = [task for task, n, status in tasks if n == name and status == "Queued"]
        if waiting:
            print(f"  removing {name}'s earlier queued task {', '.join(waiting)}", flush=True)
            res = self.call([*DVC, "queue", "remove", *waiting], env=self.env)
            if res.returncode:
                raise RunFailed(f"dvc queue remove {' '.join(waiting)} failed: {res.stderr.strip()[-500:]}")

    def metrics(self, name: str) -> dict[str, Any]:
        """The metrics of the finished experiment ``name`` from ``dvc exp show --json``: the baseline's, else
        HEAD's (a ``--temp`` run is based on the commit checked out when it starts, which a commit made since
        the script started makes another)."""
        row = find_experiment(self.exp_show(), name)
        if row is None and self.baseline:
            row = find_experiment(self.exp_show(head=True), name)
        if row is None:
            raise RunFailed(f"experiment {name} is not in `dvc exp show`")
        return run_metrics(row)

    def run(self, name: str, overrides: tuple[str, ...]) -> dict[str, Any]:
        """One ``dvc exp run --temp``; its output goes to ``log_dir/<name>.log``."""
        self.forget(name)
        log = self.log_dir / f"{name}.log"
        res = self.call(exp_run_argv(name, overrides), env=self.env, log=log)
        if res.returncode:
            raise RunFailed(f"dvc exp run exited with {res.returncode} (log: {log})")
        return self.metrics(name)

    def queued(self, jobs: int, poll_s: float = POLL_S, sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic):
        """An executor queueing the runs and running them on ``jobs`` DVC queue workers."""
        def execute(runs: list[Run]) -> Iterator[Outcome]:
            waiting = {}
            shown = self.exp_show()
            tasks = parse_queue(self.call(["dvc", "queue", "status"], env=self.env).stdout)
            for r in runs:
                row = find_experiment(shown, r.name)
                if row is not None and row["state"] == "success" and same_overrides(row, r.overrides):
                    outcome = _queued_outcome(r, row, "success", 0.0)  # finished earlier (a killed script)
                    if outcome.error is None:
                        print(f"  {r.name}: already finished in DVC, read back", flush=True)
                        yield outcome
                        continue
                try:
                    self.unqueue(r.name, tasks)
                    self.forget(r.name)
                    res = self.call(exp_run_argv(r.name, r.overrides, queue=True), env=self.env)
                    if res.returncode:
                        raise RunFailed(f"dvc exp run --queue failed: {res.stderr.strip()[-500:]}")
                    waiting[r.name] = r
                except RunFailed as e:
                    yield Outcome(r, None, str(e), 0.0)
            if waiting:
                # to a file, not a pipe: the worker daemons inherit it and would hold a pipe open forever
                res = self.call([*DVC, "queue", "start", "-j", str(jobs)], env=self.env,
                                log=self.log_dir / "queue_start.log")
                if res.returncode:
                    for r in waiting.values():
                        yield Outcome(r, None, f"dvc queue start failed (log: {self.log_dir / 'queue_start.log'})",
                                      0.0)
                    return
                yield from self._poll(waiting, poll_s, sleep, clock)
        return execute

    def _poll(self, waiting: dict[str, Run], poll_s, sleep, clock) -> Iterator[Outcome]:
        """Outcomes of the queued runs as ``dvc exp show`` reports them finished."""
        start, started, no_worker = clock(), {}, 0
        while waiting:
            sleep(poll_s)
            try:
                shown = self.exp_show()
            except RunFailed as e:  # DVC's own race: a run starting while `exp show` reads its info file
                print(f"  (dvc exp show failed, polling again: {str(e)[:160]})", flush=True)
                continue
            for name in list(waiting):
                row = find_experiment(shown, name)
                state = row["state"] if row else "missing"
                if state == "running" and name not in started:
                    started[name] = clock()
                    print(f"  {name}: running", flush=True)
                outcome = _queued_outcome(waiting[name], row, state, clock() - started.get(name, start))
                if outcome is not None:
                    del waiting[name]
                    yield outcome
            workers = parse_workers(self.call(["dvc", "queue", "status"], env=self.env).stdout)
            # DVC 3.6x reports "0 active, 0 idle" while its workers run experiments: a running one means alive
            running = any((find_experiment(shown, n) or {}).get("state") == "running" for n in waiting)
            no_worker = no_worker + 1 if waiting and workers == 0 and not running else 0
            if no_worker >= 3:  # the workers are gone and runs are left: report them rather than wait forever
                for r in waiting.values():
                    yield Outcome(r, None, "the DVC queue has no worker left (see `dvc queue status`)", 0.0)
                return


def _queued_outcome(run: Run, row: dict | None, state: str, wall_s: float) -> Outcome | None:
    """A queued run's outcome from its ``dvc exp show`` row, None while it is queued or running."""
    if state == "success" and row is not None:
        metrics = run_metrics(row)
        if metrics.get(REQUIRED) is None:
            return Outcome(run, None, f"no {REQUIRED} in its metrics/eval.json", wall_s)
        return Outcome(run, metrics, None, wall_s)
    if state == "failed":
        return Outcome(run, None, f"the queued run failed (log: dvc queue logs {run.name})", wall_s)
    if state == "missing":
        return Outcome(run, None, "the queued run left `dvc exp show` (removed?)", wall_s)
    return None


def git_provenance(call: Callable[..., Called] = call_process) -> dict[str, Any]:
    """The git revision and whether the code or params differ from it (each run records both)."""
    rev = call(["git", "rev-parse", "HEAD"])
    status = call(["git", "status", "--porcelain", "--untracked-files=no", "--",
                   "pipeline", "stages", "params.yaml", "dvc.yaml", "sources"])
    return {"git_rev": rev.stdout.strip() if rev.returncode == 0 else None,
            "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}


# --- driving a table -------------------------------------------------------------------------------

def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def rerun_hint(run: Run) -> str:
    """The commands that rerun one run: through scripts/paper_experiments.py and by hand."""
    seed = [o.split("=", 1)[1] for o in run.overrides if o.startswith("train.seed=")]
    seeds = f" --seeds {seed[0]}" if seed and run.command != "select-c3dpo" else ""
    data = next((f" --data {d.name}" for d in DATA.values() if d.prefix and run.name.startswith(d.prefix)), "")
    return (f"rerun: {SCRIPT} {run.command}{data} --only {run.name}{seeds}\n"
            f"    by hand: {shlex.join(exp_run_argv(run.name, run.overrides))}")


@dataclass
class Context:
    """Where results go and how runs are made."""

    out_dir: Path
    execute: Callable[[list[Run]], Iterable[Outcome]]
    provenance: Callable[[], dict[str, Any]]
    dry_run: bool = False
    describe: Callable[[list[Run]], list[str]] = lambda runs: [shlex.join(exp_run_argv(r.name, r.overrides))
                                                              for r in runs]


def run_table(table: Table, runs: list[Run], ctx: Context) -> list[Outcome]:
    """Run what is not done yet of ``runs``, writing each row as it comes; the failed outcomes."""
    path, sidecar_path = ctx.out_dir / table.file, ctx.out_dir / "runs.json"
    rows, sidecar = read_rows(path), load_sidecar(sidecar_path)
    todo, done = split_done(runs, rows, sidecar, table)
    print(f"{table.file}: {len(runs)} runs planned, {len(done)} done, {len(todo)} to run", flush=True)
    if ctx.dry_run:
        for line in ctx.describe(todo):
            print("  " + line)
        return []
    failed = []
    for i, outcome in enumerate(ctx.execute(todo), 1):
        r = outcome.run
        if outcome.error is not None:
            failed.append(outcome)
            print(f"[{i}/{len(todo)}] {r.name}: FAILED after {_duration(outcome.wall_s)}: {outcome.error}", flush=True)
            continue
        rows = upsert(read_rows(path), table, r, outcome.metrics)
        atomic_write(path, csv_text(rows, table.columns))
        sidecar = load_sidecar(sidecar_path)
        sidecar[r.name] = {"overrides": list(r.overrides), **ctx.provenance(), "wall_s": round(outcome.wall_s, 1),
                           "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        atomic_write(sidecar_path, json.dumps(sidecar, indent=1, sort_keys=True) + "\n")
        print(f"[{i}/{len(todo)}] {r.name}: done in {_duration(outcome.wall_s)}, "
              f"mpjpe_mm {outcome.metrics[REQUIRED]:.1f}", flush=True)
    return failed


def report(failed: list[Outcome]) -> int:
    """Print the failed runs with their rerun commands; the exit status."""
    if not failed:
        return 0
    print(f"\n{len(failed)} run(s) failed:", file=sys.stderr)
    for o in failed:
        print(f"  {o.run.name}: {o.error}\n    {rerun_hint(o.run)}", file=sys.stderr)
    return 1
