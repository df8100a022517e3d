"""Table 1, the paper's ablation: each experiment (a variant of the model or its losses) with every seed, compared
with ``dp3d`` (``table1``; its ``c3dpo`` row uses the weight ``select-c3dpo`` chose on the same data)."""

from __future__ import annotations

from typing import Any, Iterable

from experiments.data import DATA, Data
from experiments.runner import METRICS, Run, Table, num, seeded
from experiments.selection import C3DPO
from experiments.summary import compared_markdown

# --- the experiment: edit here --------------------------------------------------------------------
TABLE1: dict[str, list[str]] = {  # Table 1: name -> `-S` overrides of params.yaml (besides the seed)
    "dp3d": [],
    "dp3d_paper": ["loss.facing=0"],  # the paper-faithful model: no visibility (facing) term
    "no_canon": ["loss.canonicalisation=0"],
    "no_arap": ["loss.arap=0"],
    "no_entropy": ["loss.entropy=0"],
    "no_parts": ["model.type=no_parts"],
    "c3dpo": [*C3DPO, "loss.canonicalisation={c3dpo_weight}"],  # the weight chosen by select-c3dpo
}
REFERENCE = "dp3d"  # Table 1's rows are compared with this one
# -------------------------------------------------------------------------------------------------

CSV = Table("table1.csv", ("experiment", "seed"), METRICS, order=tuple(TABLE1))


def runs(seeds: Iterable[int], c3dpo_weight: float, experiments: dict[str, list[str]] = TABLE1,
         data: Data = DATA["mild"]) -> list[Run]:
    """Table 1: every experiment with every seed, named ``[<data prefix>]t1-<experiment>-s<seed>``."""
    weighted = {exp: [o.format(c3dpo_weight=num(c3dpo_weight)) for o in overrides]
                for exp, overrides in experiments.items()}
    return seeded(f"{data.prefix}t1-", weighted, seeds, data.overrides, "table1")


def markdown(rows: list[dict[str, Any]], title: str = "Table 1") -> str:
    """Table 1 as Markdown, each row compared with ``dp3d``."""
    return compared_markdown(rows, REFERENCE, TABLE1, title)
