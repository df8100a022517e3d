"""The data Table 1, the parts curve and the C3DPO selection are measured on (``--data mild|default|refined``): the
``-S`` overrides every run starts with (the data and how it is evaluated), the suffix of the files and the prefix of
the run names."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from experiments.runner import Table

# --- the data: edit here --------------------------------------------------------------------------
# the corruption before it was tuned against the correspondence network (issue 15): per-pixel U/V noise of
# 0.02, no front/back seams, no mirror patches. Table 1, the parts curve and the C3DPO selection were measured
# on it (the defaults then), and keep it, so that they stay comparable with what docs/results.md reports
MILD = [f"synthetic.corruption.{k}" for k in ("uv_noise=0.02", "uv_noise_scale=0", "seam_px=0", "mirror_prob=0")]
TABLES_DATA = MILD
# Table 1, the parts curve and the C3DPO selection on the default data (issue 26): the network-matched corruption,
# one thread a run (two at once on 2 cores, as robust.ROBUST_DATA); C3DPO's weight grid for it is
# selection.DEFAULT_SELECTION_WEIGHTS. Files: table1_default.csv, parts_curve_default.csv, c3dpo_selection_default.csv
DEFAULT_DATA = ["common.threads=1"]
# how each variant evaluates: the network's prediction alone (as the paper evaluates; every mild and default row was
# made so, before test-time refinement existed, and eval.refine_steps 0 is that same code path) or refined at test
# time with its settings named, so that a later default does not change what a row means
ALONE = ["eval.refine_steps=0"]
REFINE = ["eval.refine_steps=100", "eval.refine_lr=0.01", "eval.refine_anchor=0.03"]
# -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Data:
    """One ``--data`` variant."""

    name: str
    suffix: str  # table1<suffix>.csv, parts_curve<suffix>.csv, c3dpo_selection<suffix>.csv
    prefix: str  # run names: <prefix>t1-dp3d-s0
    refined: bool  # each test prediction refined (REFINE), else the network's prediction alone (ALONE)
    selection: str  # the variant whose C3DPO selection (its grid, its chosen weight) Table 1's c3dpo row uses

    @property
    def overrides(self) -> tuple[str, ...]:
        """The ``-S`` overrides every run of the variant starts with: its data, then its evaluation."""
        return (*(TABLES_DATA if self.name == "mild" else DEFAULT_DATA), *(REFINE if self.refined else ALONE))

    @property
    def chooser(self) -> Data:
        """The variant whose C3DPO selection this one uses (itself for mild and default)."""
        return DATA[self.selection]

    def table(self, table: Table) -> Table:
        stem, ext = table.file.rsplit(".", 1)
        return dataclasses.replace(table, file=f"{stem}{self.suffix}.{ext}")


DATA = {"mild": Data("mild", "", "", False, "mild"), "default": Data("default", "_default", "def-", False, "default"),
        # the default data, each test prediction refined (the default evaluation since issue 26): the same training
        # as `default`, so its c3dpo row takes the weight `default`'s selection chose
        "refined": Data("refined", "_refined", "ref-", True, "default")}
