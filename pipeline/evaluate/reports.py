"""The ``evaluate`` stage's report folder: grid, segmentation, errors, meshes and UV position maps."""

from __future__ import annotations

from pathlib import Path
import logging

import numpy as np
import trimesh

from pipeline.core.config import EvalParams
from pipeline.evaluate.batches import Kept
from pipeline.core.io import atomic_path, save_figure
from pipeline.template.file import Template
from pipeline.evaluate.uvmap import atlas_image, uv_layout, write_uv_maps

log = logging.getLogger(__name__)


UV_HALF_RANGE_PX = 4096.0  # image-frame UV maps: +-4096 px around the centroid, 0.125 px a 16-bit step


def write_reports(folder: Path, template: Template, segmentation, segmentation_init, seg_metrics: dict,
                   seg_rows: list[dict], cfg: EvalParams, kept: Kept, errors: dict | None,
                   uv_half_range: float) -> None:
    """Writes the report folder atomically (see the module docstring). Without ground truth ``kept.true``
    is empty and ``errors`` None: no truth panels, meshes or maps, and no errors.png.

    Args:
        segmentation, segmentation_init: (N, M) part weights learnt and at initialisation, or None.
        seg_metrics, seg_rows: their metrics and region table (:func:`pipeline.evaluate.segmentation.segmentation_metrics`).
        errors: the :func:`pipeline.evaluate.figures.errors_figure` keyword arguments, or None.
        uv_half_range: the UV map PNGs' half range, in the units of ``kept`` (1 m, or UV_HALF_RANGE_PX).
    """
    from pipeline.evaluate import figures as eval_plots

    shapes = {"pred": kept.pred, "true": kept.true} if kept.true else {"pred": kept.pred}
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        if cfg.grid:
            k = min(cfg.grid, len(kept.rows))
            save_figure(eval_plots.grid_figure(template, kept.xy[:k], kept.visible[:k], kept.pred[:k],
                                               kept.true[:k] or None, kept.rows[:k], kept.error[:k],
                                               pad=0.05 if kept.true else None), tmp / "grid.png")
        if segmentation is not None:
            save_figure(eval_plots.segmentation_figure(template, segmentation, segmentation_init, seg_rows,
                                                       seg_metrics), tmp / "segmentation.png")
        if errors is not None:
            save_figure(eval_plots.errors_figure(template, **errors), tmp / "errors.png")
        if cfg.meshes:
            (tmp / "meshes").mkdir()
            for i in range(min(cfg.meshes, len(kept.rows))):
                for name, vs in shapes.items():
                    mesh = trimesh.Trimesh(np.asarray(vs[i], np.float32), template.faces, process=False)
                    mesh.export(tmp / "meshes" / f"{i:03d}_row{kept.rows[i]}_{name}.ply")
        if cfg.uv_maps:
            k = min(cfg.uv_maps, len(kept.rows))
            layout = uv_layout(template.chart_uv, template.chart_faces, template.chart_part, template.chart_vertex,
                               cfg.uv_resolution, len(template.vertices))
            maps = {name: write_uv_maps(layout, np.stack(vs[:k]) - np.stack(vs[:k]).mean(1, keepdims=True))
                    for name, vs in shapes.items()}
            (tmp / "uv_maps").mkdir()
            for i in range(k):
                for name in maps:
                    eval_plots.save_position_png(atlas_image(maps[name][i]),
                                                 tmp / "uv_maps" / f"{i:03d}_row{kept.rows[i]}_{name}.png",
                                                 uv_half_range)
            save_figure(eval_plots.uv_maps_figure(maps["pred"], maps.get("true"), layout.covered, kept.rows[:k]),
                        tmp / "uv_maps.png")
    log.info("wrote reports to %s", folder)
