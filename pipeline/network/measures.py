"""How good a dense correspondence is, as DensePose measures it (Güler et al. 2018, §5), against the exact
rendering of the synthetic images.

Per instance, over its person pixels ``P`` (the exact foreground; a pasted occluder's pixels are not
the person's):

- **part accuracy**: the share of ``P`` given the right part (a pixel predicted as background counts
  as wrong);
- **U/V error**: the mean ``|ΔU| + |ΔV|`` over the pixels of ``P`` with the right part;
- **GPS**, geodesic point similarity: with ``i_p`` the template vertex the exact ``(I, U, V)`` of
  pixel ``p`` names, ``î_p`` the one the prediction names (both through the template's chart points,
  :class:`pipeline.geometry.charts.ChartLocator`) and ``g`` the geodesic distance on the template in
  metres,

      GPS = (1 / |P|) Σ_p exp(-g(i_p, î_p)² / (2 κ²)),     κ = 0.255 m (DensePose's),

  a pixel predicted as background scoring 0. Geodesics are shortest paths along the template's edges
  (``scipy.sparse.csgraph.dijkstra``; they exceed the surface geodesic by a few per cent on a mesh
  this fine).

Over instances: the mean of each, and AP at GPS thresholds. The boxes are the true ones, so every
instance is one detection of one person and the precision at a GPS threshold ``t`` is the share of
instances with GPS ≥ t: ``AP`` averages it over t = 0.50, 0.55, ..., 0.95 (COCO's thresholds),
``AP50`` and ``AP75`` are two of them. :func:`correspondence_report` measures the network and, on the same crops,
the corruption model (the store's ``labels``/``uv``): ``metrics/correspondence.json``. Size letters: ``n``
instances, ``S`` crop side, ``N`` template
vertices, ``P`` pixels (legend: :mod:`pipeline`).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from pipeline.core.errors import InputError
from pipeline.geometry.charts import ChartLocator
from pipeline.geometry.mesh import edges
from pipeline.network.checkpoint import predict_crops
from pipeline.network.model import ChartNet
from pipeline.template.file import Template, decode_iuv

__all__ = ["KAPPA", "GPS_THRESHOLDS", "Geodesics", "instance_measures", "summarise", "correspondence_report"]

KAPPA = 0.255  # metres
GEODESIC_CACHE_BYTES = 256 << 20  # the geodesic rows Geodesics keeps
GPS_THRESHOLDS = np.round(np.arange(0.50, 0.951, 0.05), 2)


class Geodesics:
    """Geodesic distances (metres) between template vertices, along the mesh's edges; rows computed on
    demand and kept, the most recently used first, within ``cache_bytes`` (a row is N float64: all of them
    fit for the default template, 12 MB, but would take 1.2 GB for Anny's ``notoes``, 6 GB for a CSE mesh)."""

    def __init__(self, template: Template, cache_bytes: int = GEODESIC_CACHE_BYTES):
        e, _ = edges(template.faces)
        v = np.asarray(template.vertices, np.float64)
        length = np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1)
        n = len(v)
        self.graph = sp.coo_matrix((length, (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
        self.max_rows = max(1, cache_bytes // (8 * n))
        self.rows: OrderedDict[int, np.ndarray] = OrderedDict()

    def _rows(self, sources: list[int]) -> list[np.ndarray]:
        """The rows of ``sources`` (at most ``max_rows``), from the cache or computed, then kept."""
        missing = [k for k in sources if k not in self.rows]
        if missing:
            for k, row in zip(missing, dijkstra(self.graph, directed=False, indices=missing)):
                self.rows[k] = row
        for k in sources:
            self.rows.move_to_end(k)
        while len(self.rows) > self.max_rows:
            self.rows.popitem(last=False)
        return [self.rows[k] for k in sources]

    def between(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(P,) float64 geodesic distance from vertex ``a[p]`` to ``b[p]`` (both (P,) int, >= 0)."""
        if len(a) == 0:
            return np.zeros(0)
        sources, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
        b, out = np.asarray(b), np.empty(len(a))
        order = np.argsort(inverse.ravel(), kind="stable")  # the pixels of each source together
        groups = np.split(order, np.cumsum(counts)[:-1])
        for s in range(0, len(sources), self.max_rows):  # blocks of sources that fit the cache
            block = [int(k) for k in sources[s:s + self.max_rows]]
            for row, idx in zip(self._rows(block), groups[s:s + self.max_rows]):
                out[idx] = row[b[idx]]
        return out


def instance_measures(pred_labels: np.ndarray, pred_uv: np.ndarray, true_labels: np.ndarray, true_uv: np.ndarray,
                      person: np.ndarray, locator: ChartLocator, geodesics: Geodesics) -> dict[str, float]:
    """Part accuracy, U/V error and GPS of one instance.

    Args:
        pred_labels: (S, S) int 0..24 (255 or anything else outside 1..24 counts as background).
        pred_uv: (2, S, S) float. true_labels, true_uv: the same, exact. person: (S, S) bool the person's
            pixels (the exact foreground minus occluders).
    """
    if pred_labels.shape != true_labels.shape or person.shape != true_labels.shape:
        raise InputError(f"measures: labels {pred_labels.shape} and {true_labels.shape}, person {person.shape} "
                         "must match")
    p = np.flatnonzero(person.ravel())
    if len(p) == 0:
        return {"part_accuracy": float("nan"), "uv_error": float("nan"), "gps": float("nan")}
    lab_t = true_labels.ravel()[p].astype(np.int64)
    lab_p = pred_labels.ravel()[p].astype(np.int64)
    uv_t = true_uv.reshape(2, -1)[:, p].T
    uv_p = np.nan_to_num(pred_uv.reshape(2, -1)[:, p].T)
    right = lab_p == lab_t
    body = (lab_p >= 1) & (lab_p <= 24)
    uv_error = float(np.abs(uv_p[right] - uv_t[right]).sum(axis=1).mean()) if right.any() else float("nan")
    score = np.zeros(len(p))
    if body.any():
        v_t = locator.locate(lab_t[body], uv_t[body])
        v_p = locator.locate(lab_p[body], uv_p[body])
        g = geodesics.between(v_t, v_p)
        score[body] = np.exp(-g ** 2 / (2 * KAPPA ** 2))
    return {"part_accuracy": float(right.mean()), "uv_error": uv_error, "gps": float(score.mean())}


def summarise(per_instance: list[dict[str, float]]) -> dict[str, float]:
    """Means over instances with a person, and GPS AP, AP50, AP75 (module docstring)."""
    rows = [r for r in per_instance if not np.isnan(r["gps"])]
    if not rows:
        raise InputError("measures: no instance shows a person")
    gps = np.array([r["gps"] for r in rows])
    precision = {float(t): float((gps >= t).mean()) for t in GPS_THRESHOLDS}
    uv = [r["uv_error"] for r in rows if not np.isnan(r["uv_error"])]
    return {"instances": len(rows), "part_accuracy": float(np.mean([r["part_accuracy"] for r in rows])),
            "uv_error": float(np.mean(uv)) if uv else float("nan"), "gps": float(gps.mean()),
            "gps_ap": float(np.mean(list(precision.values()))), "gps_ap50": precision[0.5],
            "gps_ap75": precision[0.75]}


def correspondence_report(net: ChartNet, root, rows: np.ndarray, template: Template, input_size: int,
                          device: str = "cpu", batch_size: int = 50) -> dict:
    """The measures of the network and of the store's own DensePose-like output on crops ``rows`` (n,) of
    ``root``, a store with images (``rgb``, ``gt/iuv``, ``gt/occluder``, ``labels``, ``uv``) rendered for
    ``template``: ``{"instances", "kappa_m", "network": summarise(...), "corruption": summarise(...)}``."""
    locator = ChartLocator(template.chart_part, template.chart_uv, template.chart_vertex)
    geodesics = Geodesics(template)
    crop = int(root["rgb"].shape[1])
    network, corruption = [], []
    for a in range(0, len(rows), batch_size):
        idx = np.asarray(rows[a:a + batch_size])
        pred = predict_crops(net, root["rgb"].oindex[idx], input_size, crop, device)
        labels, uv = decode_iuv(root["gt/iuv"].oindex[idx])
        occluder = np.asarray(root["gt/occluder"].oindex[idx])
        old_labels, old_uv = root["labels"].oindex[idx], root["uv"].oindex[idx].astype(np.float32)
        for k in range(len(idx)):
            person = (labels[k] > 0) & ~occluder[k]
            network.append(instance_measures(pred.labels[k].numpy(), pred.uv[k].numpy(), labels[k], uv[k], person,
                                             locator, geodesics))
            corruption.append(instance_measures(old_labels[k], old_uv[k], labels[k], uv[k], person, locator,
                                                geodesics))
    return {"instances": len(rows), "kappa_m": KAPPA, "network": summarise(network),
            "corruption": summarise(corruption)}
