"""Where the dense correspondence comes from (``sources``, issue 15): the same measures as Table 1 from the exact
IUV, the hand-made corruption (now and before it was tuned) and the correspondence network on the rendered
images, on the same synthetic instances, compared with the exact IUV."""

from __future__ import annotations

from typing import Any, Iterable

from experiments.data import MILD, REFINE
from experiments.runner import METRICS, Run, Table, seeded
from experiments.summary import compared_markdown

# --- the experiment: edit here --------------------------------------------------------------------
# the exact IUV (the corruption off but the occluders, which hide the same pixels in every source), the hand-made
# corruption (the defaults), and the correspondence network on the rendered images, trained with the 30-minute CPU
# profile
NETWORK_PROFILE = ["network.train_bodies=500", "network.steps=4000"]
EXACT = [f"synthetic.corruption.{k}=0" for k in ("uv_noise", "embedding_noise", "flip_prob", "dropout_blobs",
                                                 "border_px", "seam_px", "mirror_prob")]
NETWORK = ["densepose.source=network", *NETWORK_PROFILE]
SOURCES: dict[str, list[str]] = {"exact": EXACT, "corrupted": [], "mild": MILD, "network": NETWORK,
                                 # two rounds (train.rounds: 2, the best row of the robust table) on the network's
                                 # keypoints (issue 26's target for this source)
                                 "network_two_rounds": [*NETWORK, "train.rounds=2"],
                                 # the mirror-aware residual (loss.mirror): the network reads whole limbs as their
                                 # twins (scripts/mirror_swaps.py)
                                 "network_mirror": [*NETWORK, "loss.mirror=true"],
                                 # the same on the limbs only: torso and head anchor the body's facing
                                 "network_mirror_limbs": [*NETWORK, "loss.mirror=true", "loss.mirror_parts=limbs"],
                                 # both: round 1 turns away hidden-vertex keypoints, the mirror tolerates swapped limbs
                                 "network_two_rounds_mirror_limbs": [*NETWORK, "train.rounds=2", "loss.mirror=true",
                                                                     "loss.mirror_parts=limbs"],
                                 # test-time refinement (eval.refine_*); the rows above are the network's prediction
                                 # alone (made before it existed)
                                 "exact_refine": [*EXACT, *REFINE], "network_refine": [*NETWORK, *REFINE],
                                 "network_mirror_limbs_refine": [*NETWORK, "loss.mirror=true",
                                                                 "loss.mirror_parts=limbs", *REFINE]}
REFERENCE = "exact"
# -------------------------------------------------------------------------------------------------

CSV = Table("sources.csv", ("experiment", "seed"), METRICS)


def runs(seeds: Iterable[int], experiments: dict[str, list[str]] = SOURCES) -> list[Run]:
    """The correspondence sources with every seed, named ``src-<source>-s<seed>``. The network rows share one
    network (the 30-minute CPU profile): the first run trains it, DVC's run cache restores ``models/network.pt`` for
    the others (docs/DESIGN.md §11)."""
    return seeded("src-", experiments, seeds, (), "sources")


def markdown(rows: list[dict[str, Any]]) -> str:
    """The sources table as Markdown, compared with the exact IUV."""
    return compared_markdown(rows, REFERENCE, SOURCES, "MPJPE by correspondence source")
