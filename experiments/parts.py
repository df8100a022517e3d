"""The parts curve (the paper's Fig. 8, ``parts``): DP3D with each number of parts and every seed; its Markdown
table and its figure (MPJPE and RE14 against the number of parts)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable

from experiments.data import DATA, Data
from experiments.runner import METRICS, Run, Table, seeded, sort_value
from experiments.summary import STAT_HEADER, group_stats, markdown_table, mean_std, stat_cells, to_float

# --- the experiment: edit here --------------------------------------------------------------------
PARTS = (1, 2, 3, 5, 10, 16)  # the parts curve: model.parts=<p>
# -------------------------------------------------------------------------------------------------

CSV = Table("parts_curve.csv", ("parts", "seed"), METRICS)


def runs(seeds: Iterable[int], parts: Iterable[int] = PARTS, data: Data = DATA["mild"]) -> list[Run]:
    """The parts curve: every parts count with every seed, named ``[<data prefix>]parts-<p>-s<seed>``."""
    return seeded(f"{data.prefix}parts-", {str(p): [f"model.parts={p}"] for p in parts}, seeds, data.overrides,
                  "parts")


def markdown(rows: list[dict[str, Any]], data: str = "mild") -> str:
    """The parts curve as Markdown: mean ± std over seeds per number of parts."""
    stats = group_stats(rows, "parts")
    order = sorted(stats, key=lambda p: sort_value("parts", p))
    caption = (f"Parts curve (DP3D, {data} data, test split, mm; mean ± sample std over seeds; MPJPE / flat: "
               "mean MPJPE over the mean flat reference):\n\n")
    return caption + markdown_table(["parts", *STAT_HEADER], [[p, *stat_cells(stats[p])] for p in order])


def png(rows: list[dict[str, Any]], path: Path, data: str = "mild") -> None:
    """MPJPE and RE14 against the number of parts (log axis, ticks at the counts), error bars the std
    over seeds, each seed a faint dot, the mean flat reference dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = group_stats(rows, "parts")
    parts = sorted((p for p in stats if to_float(p) is not None), key=float)
    xs = [float(p) for p in parts]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=150)
    for metric, label, colour in (("mpjpe_mm", "MPJPE", "C0"), ("re14_mm", "RE14", "C1")):
        means = [stats[p][metric][0] for p in parts]
        stds = [0.0 if math.isnan(stats[p][metric][1]) else stats[p][metric][1] for p in parts]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=4, color=colour, label=f"{label} (mean ± std)")
        seeds = [(float(r["parts"]), to_float(r.get(metric))) for r in rows if to_float(r.get("parts")) is not None]
        ax.scatter([x for x, y in seeds if y is not None], [y for _, y in seeds if y is not None],
                   s=10, color=colour, alpha=0.35, linewidths=0)
    flat = mean_std(r.get("flat_mpjpe_mm") for r in rows)[0]
    if not math.isnan(flat):
        ax.axhline(flat, color="0.3", linestyle="--", linewidth=1.2, label=f"flat reference (MPJPE {flat:.0f})")
    ax.set_xscale("log")
    ax.set_xticks(xs, parts)
    ax.minorticks_off()
    seeds_n = max((s["n"] for s in stats.values()), default=0)
    ax.set(xlabel="number of parts (model.parts)", ylabel="error (mm)",
           title=f"DP3D parts curve ({data} data, test split; up to {seeds_n} seeds per point)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
