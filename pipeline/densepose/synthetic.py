"""The synthetic DensePose source: posed Anny bodies rendered with exact dense correspondence.

Following references/002 and the UP-3D protocol of DP3D: the bodies, their cameras, crops, exact ground truth
(``gt/``) and DensePose-like output (``labels``, ``uv``, ``embedding``, ``mask``, the exact rendering after
:mod:`pipeline.render.corruption`) are rendered by :func:`pipeline.render.bodies.render_bodies`; this module
writes them into ``densepose.zarr``, ``synthetic.batch`` bodies at a time. Layout: :mod:`pipeline.densepose.store`.

Bodies ``0 .. train_bodies - 1`` form the train split, the next ``test_bodies`` the test split, so
no body is in both; instances are stored body-major (instance ``i`` is view ``i % views`` of body
``i // views``).

Determinism: every body and instance draws from generators of its own index (:mod:`pipeline.render.bodies`),
so the output does not depend on batching, and two runs with the same params are byte-identical.

Size letters: ``n`` instances, ``G`` bodies, ``S`` crop side (legend: :mod:`pipeline`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from pipeline.core.config import Params, SyntheticParams, as_dict
from pipeline.core.ranks import ALONE, Ranks, check_share, ordered_map
from pipeline.core.stage import progress
from pipeline.core.store import StoreWriter
from pipeline.densepose.door import zero_counts
from pipeline.densepose.store import SCHEMA, densepose_specs
from pipeline.densepose.write import DenseposeSummary, store_params
from pipeline.render.bodies import CROWDED, HIDDEN, body_model, make_bodies, render_bodies
from pipeline.render.corruption import chart_mirror
from pipeline.render.poses import POSE_MODES
from pipeline.render.rays import warp_device
from pipeline.template.file import Template

log = logging.getLogger(__name__)

__all__ = ["STORE_CHUNK", "write_synthetic_store", "write_store"]

STORE_CHUNK = 128  # instances a Zarr chunk of the store (and a task of the iuv and keypoints stages)


def _batches(total: int, size: int) -> list[np.ndarray]:
    return [np.arange(s, min(s + size, total)) for s in range(0, total, size)]


def write_synthetic_store(path: str | Path, template: Template, p: SyntheticParams, *, crop: int, seed: int,
                          device: str = "auto", params: dict | None = None, source: str = "synthetic",
                          observe: Callable[[dict[str, np.ndarray]], None] | None = None,
                          ranks: Ranks = ALONE) -> DenseposeSummary:
    """Renders every body of both splits into ``densepose.zarr`` (atomic). Returns its summary (the door's
    counts, :data:`pipeline.densepose.door.COUNT_KEYS`, all 0: nothing is read from the user).

    Args:
        source: the store's ``source`` attribute.
        observe: called on each batch's rows (:func:`render_bodies`) before they are written, to replace the
            DensePose-like output (``labels``, ``uv``) with another observer's (the network source's).
        ranks: under torchrun, batch ``t`` of ``synthetic.batch`` bodies renders on rank ``t mod P`` and rank 0
            writes (:func:`pipeline.core.ranks.ordered_map`): the same store; the other ranks end when done.
    """
    dev = warp_device(device, ranks.local)
    model = body_model(template)
    mirror = chart_mirror(template) if p.corruption.mirror_prob else None  # once per store, not per batch
    n_bodies = p.train_bodies + p.test_bodies
    n = n_bodies * p.views
    batches = _batches(n_bodies, p.batch)
    check_share(len(batches), ranks, f"batches of synthetic.batch = {p.batch} bodies ({n_bodies} bodies)",
                "lower synthetic.batch or the processes")

    def render(t: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        bodies = make_bodies(model, batches[t], p, seed)
        rows = render_bodies(bodies, template, p, crop, seed, dev, first_instance=int(batches[t][0]) * p.views,
                             mirror=mirror)
        if observe is not None:
            observe(rows)
        return rows, bodies.mode

    if not ranks.writer:
        for _ in ordered_map(render, len(batches), ranks):
            pass
        ranks.leave_unless_writer()
    specs = densepose_specs(crop, chart=True, cse_dim=template.embedding.shape[1] if p.cse else None,
                            n_vertices=template.n_vertices,
                            n_joints=template.joint_regressor.shape[0], images=p.images)
    attrs = {"schema": SCHEMA, "source": source, "crop": crop, "kinds": ["chart", "cse"] if p.cse else ["chart"],
             "images": [f"synthetic/body{b:06d}_view{k:03d}" for b in range(n_bodies) for k in range(p.views)],
             "template_hash": template.hash, "projection": p.projection, "image_size": p.image_size,
             "pose_modes": list(POSE_MODES), "params": params if params is not None else as_dict(p)}
    t0 = time.perf_counter()
    counts = {"bodies": n_bodies, "foreground_pixels": 0, "visible_vertices": 0, "occluded_vertices": 0,
              "crowded_instances": 0, "hidden_by_neighbour_pixels": 0, "modes": [0] * len(POSE_MODES)}
    # one background thread compresses and writes batch k while batch k + 1 renders (Blosc and Warp
    # release the GIL); writes stay in order, so the store's bytes do not depend on the timing
    # shards of 1024 instances (not the default 2048), so that shards fill and compress during the run
    with StoreWriter.create(path, n, specs, attrs, chunk=STORE_CHUNK, chunks_per_shard=8) as w, \
            ThreadPoolExecutor(max_workers=1) as writer:
        pending: list[Future] = []
        bar = progress(total=n, desc=f"{source} images" if p.images else source, unit="inst")
        for t, (rows, modes) in ordered_map(render, len(batches), ranks):
            crowded, hidden = rows.pop(CROWDED), rows.pop(HIDDEN)  # counts, not store arrays
            while pending:  # at most one batch waits for the writer: bounded memory
                pending.pop(0).result()
            pending.append(writer.submit(w.write, int(batches[t][0]) * p.views, rows))
            counts["foreground_pixels"] += int((rows["gt/iuv"][..., 0] > 0).sum())
            counts["visible_vertices"] += int(rows["gt/visible"].sum())
            counts["occluded_vertices"] += int(rows["gt/occluded"].sum())
            counts["crowded_instances"] += int(crowded.sum())
            counts["hidden_by_neighbour_pixels"] += int(hidden.sum())
            for m in modes:
                counts["modes"][int(m)] += 1
            bar.update(len(batches[t]) * p.views)
        for f in pending:
            f.result()
        bar.close()
    where = dev if ranks.world == 1 else f"{ranks.world} processes ({dev} on rank 0)"
    return DenseposeSummary(source, n, p.train_bodies * p.views, p.test_bodies * p.views, zero_counts(), counts,
                            seconds=time.perf_counter() - t0, device=where)


def write_store(params: Params, template: Template, out: str | Path, ranks: Ranks = ALONE) -> DenseposeSummary:
    """The source's entry point (the signature every source shares; ``stages/densepose.py`` picks the source)."""
    return write_synthetic_store(out, template, params.synthetic, crop=params.densepose.crop, seed=params.common.seed,
                                 device=params.common.device, params=store_params(params), ranks=ranks)
