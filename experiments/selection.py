"""C3DPO's canonicalisation weight (``select-c3dpo``): each weight of the data's grid trained without 10% of the
train bodies and evaluated on them; the lowest MPJPE is the weight Table 1's ``c3dpo`` row uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from experiments.data import DATA, Data
from experiments.runner import Run, Table, num, read_rows
from experiments.summary import fmt, markdown_table, to_float

# --- the experiment: edit here --------------------------------------------------------------------
C3DPO = ["model.type=c3dpo", "train.inplane_augment=true", "loss.canon_samples=4"]  # also Table 1's c3dpo row
SELECTION_WEIGHTS = (0.01, 0.1, 1, 10)  # select-c3dpo: loss.canonicalisation=<w> ...
SELECTION = [*C3DPO, "train.val_share=0.1", "eval.split=val", "train.seed=0"]  # ... on held-out train bodies
DEFAULT_C3DPO_WEIGHT = 0.1
# on the default data (--data default): the grid extended below 0.01, where the mild selection ended
DEFAULT_SELECTION_WEIGHTS = (0.001, 0.003, 0.01, 0.1)
WEIGHTS = {"mild": SELECTION_WEIGHTS, "default": DEFAULT_SELECTION_WEIGHTS}  # the grid of each data
# -------------------------------------------------------------------------------------------------

CSV = Table("c3dpo_selection.csv", ("weight",), ("mpjpe_mm", "re14_mm"))


def runs(weights: Iterable[float] | None = None, data: Data = DATA["mild"]) -> list[Run]:
    """C3DPO's canonicalisation weights (default: the data's grid) on the held-out train bodies, named
    ``[<data prefix>]c3dpo-w<weight>``."""
    return [Run(f"{data.prefix}c3dpo-w{num(w)}", (num(w),),
                (*data.overrides, *SELECTION, f"loss.canonicalisation={num(w)}"), "select-c3dpo")
            for w in (WEIGHTS[data.name] if weights is None else weights)]


def chosen_weight(rows: list[dict[str, Any]]) -> float | None:
    """The selection's weight with the lowest mpjpe_mm (the smaller weight on a tie); None without rows."""
    scored = [(to_float(r.get("mpjpe_mm")), to_float(r.get("weight"))) for r in rows]
    scored = [(m, w) for m, w in scored if m is not None and w is not None]
    return min(scored)[1] if scored else None


def c3dpo_weight(path: Path, default: float = DEFAULT_C3DPO_WEIGHT) -> float:
    """The chosen weight of the selection CSV at ``path``, else ``default``."""
    weight = chosen_weight(read_rows(path))
    return default if weight is None else weight


def note(path: Path, weights: Iterable[float] = SELECTION_WEIGHTS) -> str:
    """Which loss.canonicalisation Table 1's c3dpo uses, and why."""
    rows = read_rows(path)
    weight = chosen_weight(rows)
    if weight is None:
        return f"c3dpo: loss.canonicalisation={num(DEFAULT_C3DPO_WEIGHT)} (the default: no selection results yet)"
    measured = {str(r.get("weight")) for r in rows if to_float(r.get("mpjpe_mm")) is not None}
    missing = sorted({num(w) for w in weights} - measured, key=float)
    incomplete = f" (selection incomplete: no result for {', '.join(missing)})" if missing else ""
    return f"c3dpo: loss.canonicalisation={num(weight)}, chosen by select-c3dpo{incomplete}"


def markdown(rows: list[dict[str, Any]]) -> str:
    """The C3DPO selection as Markdown, with the chosen weight."""
    weight = chosen_weight(rows)
    lines = [[str(r["weight"]), *(fmt(to_float(r.get(m)), ".1f") for m in ("mpjpe_mm", "re14_mm"))] for r in rows]
    chosen = "none yet" if weight is None else num(weight)
    return ("C3DPO canonicalisation weight (seed 0; trained without 10% of the train bodies, evaluated on "
            f"them; mm). Chosen: **{chosen}** (lowest MPJPE).\n\n"
            + markdown_table(["loss.canonicalisation", "MPJPE", "RE14"], lines))
