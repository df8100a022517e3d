"""The paper's experiments, made by the pipeline with several seeds: Table 1 and the parts curve (Fig. 8).

Every run is a DVC experiment in a temporary workspace (``dvc exp run --temp``: the workspace and
params.yaml stay untouched), read back from ``dvc exp show --json`` and appended to a CSV under
``metrics/paper/``; Markdown summaries and the parts-curve figure are made from the CSVs::

    python scripts/paper_experiments.py all                # select-c3dpo, table1, parts, summarise
    python scripts/paper_experiments.py select-c3dpo       # C3DPO's canonicalisation weight on held-out train bodies
    python scripts/paper_experiments.py table1 --seeds 0 1 2
    python scripts/paper_experiments.py all --data default --jobs 2   # the three on the default data (issue 26)
    python scripts/paper_experiments.py table1 --data refined --jobs 2  # the default data, predictions refined
    python scripts/paper_experiments.py parts --only parts-16
    python scripts/paper_experiments.py sources            # MPJPE from exact, corrupted (now, before) and network IUV
    python scripts/paper_experiments.py robust             # the robust lifting losses on the default data (ROBUST)
    python scripts/paper_experiments.py table1 --dry-run   # print the commands, run nothing
    python scripts/paper_experiments.py parts --jobs 2     # 2 runs at a time through DVC's queue
    python scripts/paper_experiments.py summarise          # only rewrite the .md and .png from the CSVs

(``python -m experiments ...`` is the same command.) The experiments are edited at the top of their modules
in ``experiments/``: ``table1.py`` (TABLE1), ``parts.py`` (PARTS), ``selection.py`` (C3DPO, the weight grids),
``sources.py`` (SOURCES), ``robust.py`` (ROBUST) and ``data.py`` (the ``--data`` variants, TABLES_DATA);
``runner.py`` runs them through DVC and resumes, ``summary.py`` writes mean ± std, ``cli.py`` is the command line.

Outputs (``--out-dir``, default ``metrics/paper``):

* ``table1.csv`` (experiment, seed, metrics) and ``parts_curve.csv`` (parts, seed, metrics): one row
  per run; the metrics are ``metrics/eval.json``'s mpjpe_mm, re14_mm, xy_mm, z_mm, flat_mpjpe_mm and
  parts_used.
* ``table1.md``, ``parts_curve.md``: mean ± std over seeds, the ratio of mean MPJPE to the mean flat
  reference and, in Table 1, each row's MPJPE difference to ``dp3d`` and whether it is worse by more
  than the two rows' pooled std.
* ``parts_curve.png``: MPJPE and RE14 against the number of parts, error bars the std over seeds.
* ``sources.csv`` and ``sources.md``: the same measures with the dense correspondence from the exact IUV, the
  hand-made corruption and the correspondence network on the rendered images (``SOURCES``), compared with
  the exact IUV.
* ``robust_default.csv`` and ``robust_default.md``: the lifting-loss options of ``ROBUST`` (robust norms,
  heteroscedastic, mirror-aware) on the default data, compared with today's pseudo-Huber.
* ``c3dpo_selection.csv`` (weight, mpjpe_mm, re14_mm) and ``c3dpo_selection.md``: C3DPO's
  canonicalisation weight, chosen (lowest MPJPE) on 10% of the train bodies held out of training;
  ``table1`` uses it for ``c3dpo`` (0.1 until the selection has been run).
* with ``--data default``: ``table1_default.*``, ``parts_curve_default.*`` and ``c3dpo_selection_default.*``,
  their runs named ``def-...``. The mild and default tables measure the network's prediction alone (as the paper
  does; ``eval.refine_steps=0`` in every run's overrides).
* with ``--data refined``: ``table1_refined.*`` and ``parts_curve_refined.*``, runs ``ref-...``: the default data
  with each test prediction refined (``REFINE``, the default evaluation); C3DPO's weight is the default data's
  selection (the same training).
* ``runs.json``: per run name its ``-S`` overrides, git revision, wall time and finish time.

Resuming: a run whose row is in the CSV and whose overrides in ``runs.json`` are the ones planned now
is skipped, so an interrupted command picks up where it stopped (each CSV is rewritten atomically
after every run); edit an experiment's overrides and only its rows are run again. A failed run is
reported with the command that reruns it; the others still run and the exit status is 1.

Concurrency: ``dvc exp run`` holds the repository lock (``.dvc/tmp/lock``) for the whole run, the
temporary-workspace execution included (``dvc/repo/experiments/run.py`` is ``@locked``), so two
``dvc exp run --temp`` processes cannot run at once: the second fails with "Unable to acquire lock"
or, with ``--wait-for-lock``, waits (treeverse/dvc#5718). ``--jobs N`` (N > 1) therefore queues the
runs (``dvc exp run --queue``), starts N queue workers (``dvc queue start -j N``) and polls
``dvc exp show --json`` until they are done; each worker runs its experiment in its own temporary
copy. The workers inherit ``OMP_NUM_THREADS`` = ``MKL_NUM_THREADS`` = max(1, cores // N) from this
script (workers already running keep theirs), and the queue is shared: ``dvc queue start`` also runs
experiments someone else queued. Every DVC command is called with ``--wait-for-lock``, so runs wait
for a ``dvc repro`` or ``dvc exp run`` in the workspace instead of failing.

Each ``dvc exp run --temp`` runs the workspace as it is when the run starts, uncommitted changes
included: run the experiments on a committed tree (the script warns when pipeline/, stages/,
params.yaml or dvc.yaml have uncommitted changes; ``runs.json`` records the revision).
"""
