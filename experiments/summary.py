"""The experiments' Markdown tables: mean ± sample std over seeds, the ratio to the flat reference, and a row's
MPJPE difference to a reference row with the pooled-std verdict (Table 1, the sources, the robust losses)."""

from __future__ import annotations

import math
from typing import Any, Iterable

from experiments.runner import COUNTED, METRICS


def to_float(value: Any) -> float | None:
    """A CSV cell as a number, None when it is empty, not a number or nan."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def mean_std(values: Iterable[Any]) -> tuple[float, float, int]:
    """(mean, sample std with n-1, n) of the numeric values; std is nan below 2 values, mean at 0."""
    xs = [x for x in (to_float(v) for v in values) if x is not None]
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else math.nan
    return mean, std, n


def true_count(values: Iterable[Any]) -> tuple[int, int]:
    """(how many are true, how many are known) of CSV cells holding booleans ("True"/"False", 1/0); empty cells
    and other text are unknown."""
    known = [str(v).strip().lower() for v in values if str(v).strip().lower() in ("true", "false", "1", "0")]
    return sum(v in ("true", "1") for v in known), len(known)


def pooled_std(s1: float, n1: int, s2: float, n2: int) -> float:
    """sqrt(((n1-1) s1² + (n2-1) s2²) / (n1 + n2 - 2)); a group of one adds nothing; nan if undefined."""
    dof = n1 + n2 - 2
    if dof <= 0:
        return math.nan
    ss = sum((n - 1) * s * s for s, n in ((s1, n1), (s2, n2)) if n > 1)
    return math.sqrt(ss / dof)


def worse_verdict(diff: float, pooled: float) -> str:
    """"yes" when ``diff`` (row minus reference) exceeds the pooled std, "no" otherwise, "–" if unknown."""
    if math.isnan(diff) or math.isnan(pooled):
        return "–"
    return "yes" if diff > pooled else "no"


def group_stats(rows: list[dict[str, Any]], by: str, metrics: Iterable[str] = METRICS) -> dict[str, dict]:
    """Per value of column ``by`` (first-seen order): {"n": seeds, metric: (mean, std, n)}, or for a boolean
    metric (``COUNTED``) (true, known)."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(str(row[by]), []).append(row)
    return {name: {"n": len(members), **{m: (true_count if m in COUNTED else mean_std)(r.get(m) for r in members)
                                         for m in metrics}}
            for name, members in groups.items()}


def _ordered(names: Iterable[str], order: Iterable[str]) -> list[str]:
    names = list(names)
    first = [n for n in order if n in names]
    return first + sorted(n for n in names if n not in first)


def ratio(stats: dict) -> float:
    """Mean MPJPE over the mean flat reference (nan when either is missing)."""
    flat = stats["flat_mpjpe_mm"][0]
    return stats["mpjpe_mm"][0] / flat if flat and not math.isnan(flat) else math.nan


def fmt_mean_std(mean: float, std: float, precision: int = 1) -> str:
    """"174.4 ± 2.1"; the mean alone when the std is undefined; "–" without values."""
    if math.isnan(mean):
        return "–"
    return f"{mean:.{precision}f}" if math.isnan(std) else f"{mean:.{precision}f} ± {std:.{precision}f}"


def fmt(x: float | None, spec: str) -> str:
    """``x`` formatted by ``spec``, "–" when it is None or nan."""
    return "–" if x is None or math.isnan(x) else format(x, spec)


COLUMNS = [("MPJPE", "mpjpe_mm"), ("RE14", "re14_mm"), ("xy", "xy_mm"), ("z", "z_mm"), ("flat ref.", "flat_mpjpe_mm")]
STAT_HEADER = ["seeds", *(c for c, _ in COLUMNS), "MPJPE / flat", "parts used", "regions distinct"]  # stat_cells


def markdown_table(header: list[str], lines: list[list[str]]) -> str:
    """A Markdown table: the first column left-aligned, the others right-aligned."""
    align = "|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|"
    return "\n".join(["| " + " | ".join(header) + " |", align] + ["| " + " | ".join(c) + " |" for c in lines]) + "\n"


def stat_cells(stats: dict) -> list[str]:
    """The cells of STAT_HEADER for one group of :func:`group_stats`."""
    cells = [str(stats["n"])] + [fmt_mean_std(*stats[m][:2]) for _, m in COLUMNS]
    distinct, known = stats["regions_distinct"]
    return cells + [fmt(ratio(stats), ".3f"), fmt_mean_std(*stats["parts_used"][:2]),
                    f"{distinct} of {known}" if known else "–"]


def compared_rows(rows: list[dict[str, Any]], reference: str, order: Iterable[str]) -> list[dict]:
    """A table of experiments' summary lines (``order`` first): experiment, stats, Δ MPJPE to the reference row,
    pooled std, verdict."""
    stats = group_stats(rows, "experiment")
    ref = stats.get(reference)
    out = []
    for name in _ordered(stats, order):
        s = stats[name]
        if ref is None or name == reference:
            diff = pooled = math.nan
        else:
            (m1, s1, n1), (m0, s0, n0) = s["mpjpe_mm"], ref["mpjpe_mm"]
            diff, pooled = m1 - m0, pooled_std(s1, n1, s0, n0)
        verdict = "–" if name == reference else worse_verdict(diff, pooled)
        out.append({"experiment": name, "stats": s, "diff": diff, "pooled": pooled, "verdict": verdict})
    return out


def compared_markdown(rows: list[dict[str, Any]], reference: str, order: Iterable[str], title: str) -> str:
    """A table of experiments as Markdown: mean ± std over seeds per experiment, the ratio to the flat reference
    and each row's MPJPE difference to the reference row with the pooled-std verdict."""
    header = ["experiment", *STAT_HEADER, f"Δ MPJPE vs {reference}", "pooled std", "worse by more than pooled std"]
    lines = [[r["experiment"], *stat_cells(r["stats"]), fmt(r["diff"], "+.1f"), fmt(r["pooled"], ".1f"),
              r["verdict"]] for r in compared_rows(rows, reference, order)]
    caption = (f"{title} (test split, mm; mean ± sample std over seeds; MPJPE / flat: mean MPJPE over the mean "
               "flat reference; pooled std = sqrt(((n₁−1)s₁² + (n₂−1)s₂²) / (n₁+n₂−2)) of the row and "
               f"{reference}):\n\n")
    return caption + markdown_table(header, lines)
