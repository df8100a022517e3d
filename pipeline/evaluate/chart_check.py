"""A check of the template's charts on DensePose output that has no 3D truth (real photos), as pure functions.

DensePose names, for each foreground pixel, a part ``I`` and a chart point ``(U, V)``; the template's atlas
(:class:`pipeline.geometry.charts.ChartLocator`) turns that into a template vertex. When the template's charts
follow the same convention as the output's, the vertices the pixels name are laid out on the template as the
pixels are in the image. Three measures test that without any 3D ground truth:

1. :func:`seam_distances`, :func:`seam_summary`: every pair of 4-neighbour pixels of one instance, both
   foreground: the rest-pose distance (mm) between the two vertices they name. Pairs inside one part measure
   the chart's scale against the pixel grid; pairs across a part seam (two different parts) whether two charts
   meet where the body's parts meet: a chart that is flipped or rotated against DensePose's puts the two sides
   of a seam far apart on the template.
2. :func:`upright_instances`, :func:`height_correlations`, :func:`height_summary`: on an upright person, a
   pixel higher in the image should name a vertex higher on the template (its ``up`` axis): the Pearson
   correlation of the two per part is positive; a part whose chart is flipped along the body's axis gives a
   negative one. The part's own segment must run up the image for that to hold: with the output's convention
   (which chart axis runs along each segment), a part whose along-axis coordinate barely changes with image height
   (a forearm reaching towards the camera shows its girth, not its length) is left out (:func:`along_coordinate`).
3. :func:`neighbour_region_pairs`, :func:`annotated_rank_correlation`: on human-annotated points (DensePose-COCO),
   the Spearman rank correlation between the image distance and the template distance over the point pairs
   whose parts lie in neighbouring body regions (:data:`NEIGHBOUR_REGIONS`). Pairs inside one region are left
   out: a chart flipped within its part keeps their distances roughly alike.

:func:`image_checks` runs 1 and 2 on one image with an instance map (DensePose-RCNN's ``*_IUV.png`` and
``*_INDS.png``); :func:`crop_checks` on a stack of one-instance crops (the synthetic source's exact rendering).

Size letters: ``N`` template vertices, ``C`` chart points, ``H, W`` image height and width, ``n`` crops, ``S``
crop side, ``P`` pixels or points of a flat list (legend: :mod:`pipeline`).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from pipeline.core.errors import InputError
from pipeline.geometry.charts import ChartLocator
from pipeline.template.file import COARSE_OF_PART, N_PARTS, PART_NAMES, SEGMENTS

__all__ = ["HEAD_PARTS", "LOW_PARTS", "UPRIGHT_ASPECT", "UPRIGHT_MIN_PIXELS", "MIN_PART_PIXELS",
           "NEIGHBOUR_REGIONS", "EDGE_BAND", "pixel_vertices", "neighbour_pixel_pairs", "seam_distances",
           "outline_distance", "edge_pairs", "seam_summary", "exact_seam_floor",
           "upright_instances", "along_coordinate", "height_correlations", "height_summary", "neighbour_region_pairs",
           "annotated_rank_correlation", "image_checks", "crop_checks"]

HEAD_PARTS = (23, 24)  # an upright person's head ...
LOW_PARTS = (5, 6, 11, 12, 13, 14)  # ... lies above its feet and lower legs in the image
UPRIGHT_ASPECT = 1.8  # an upright person's foreground box is at least this many times taller than wide
UPRIGHT_MIN_PIXELS = 2000  # and has at least this many foreground pixels
MIN_PART_PIXELS = 30  # a part's height correlation needs at least this many pixels
MIN_ALONG = 0.5  # and |Pearson| of image height and its along-segment chart coordinate at least this
EDGE_BAND = 0.15  # a pixel within this of its chart's outline (chart units) lies at its part's border

# neighbouring body regions (keys of SEGMENTS; "left"/"right" the person's own): each limb joins the next on
# its own side
NEIGHBOUR_REGIONS = (
    ("torso", "head"),
    ("torso", "left upper arm"), ("torso", "right upper arm"),
    ("left upper arm", "left lower arm"), ("right upper arm", "right lower arm"),
    ("left lower arm", "left hand"), ("right lower arm", "right hand"),
    ("torso", "left upper leg"), ("torso", "right upper leg"),
    ("left upper leg", "left lower leg"), ("right upper leg", "right lower leg"),
    ("left lower leg", "left foot"), ("right lower leg", "right foot"),
)
_REGION_ID = {name: i for i, name in enumerate(SEGMENTS, start=1)}  # the ids COARSE_OF_PART gives


def _percentiles(d: np.ndarray) -> dict:
    """``{"count", "median_mm", "p90_mm", "same_vertex"}`` of distances ``d`` (P,) float mm (NaN when empty);
    ``same_vertex``: the share of pairs at distance 0 (both pixels name one vertex: the template's vertices are
    sparser than the pixels, so a median inside a part is often 0)."""
    if len(d) == 0:
        return {"count": 0, "median_mm": float("nan"), "p90_mm": float("nan"), "same_vertex": float("nan")}
    return {"count": int(len(d)), "median_mm": float(np.median(d)), "p90_mm": float(np.percentile(d, 90)),
            "same_vertex": float(np.mean(d == 0))}


def _check_maps(labels: np.ndarray, uv: np.ndarray, instance: np.ndarray | None = None) -> None:
    if labels.ndim != 2:
        raise InputError(f"labels must be (H, W), got shape {labels.shape}")
    if uv.shape != (2, *labels.shape):
        raise InputError(f"uv must be (2, H, W) = {(2, *labels.shape)}, got shape {uv.shape}")
    if instance is not None and instance.shape != labels.shape:
        raise InputError(f"the instance map must have the labels' shape {labels.shape}, got {instance.shape}")


def pixel_vertices(labels: np.ndarray, uv: np.ndarray, locator: ChartLocator) -> np.ndarray:
    """The template vertex each foreground pixel names.

    Args:
        labels: (H, W) int part 0..24 (0 background; anything above 24 is missing).
        uv: (2, H, W) float U, V in [0, 1]. locator: the template's charts.
    Returns:
        (H, W) int64 vertex; -1 where the label is background or missing or U, V is not finite.
    """
    labels = np.asarray(labels)
    uv = np.asarray(uv, np.float64)
    _check_maps(labels, uv)
    fg = (labels >= 1) & (labels <= N_PARTS) & np.isfinite(uv).all(axis=0)
    out = np.full(labels.shape, -1, np.int64)
    out[fg] = locator.locate(labels[fg].astype(np.int64), uv[:, fg].T)
    return out


def neighbour_pixel_pairs(instance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 4-neighbour pixel pairs of one instance.

    Args:
        instance: (H, W) int instance id of each pixel, 0 where it is not a foreground pixel.
    Returns:
        a, b: (P,) int64 flat pixel indices (row-major) of each pair's two pixels, both of the same instance
        (> 0); horizontal pairs first, then vertical ones.
    """
    instance = np.asarray(instance)
    h, w = instance.shape
    idx = np.arange(h * w).reshape(h, w)
    same_h = (instance[:, :-1] > 0) & (instance[:, :-1] == instance[:, 1:])
    same_v = (instance[:-1] > 0) & (instance[:-1] == instance[1:])
    a = np.concatenate([idx[:, :-1][same_h], idx[:-1][same_v]])
    b = np.concatenate([idx[:, 1:][same_h], idx[1:][same_v]])
    return a, b


def seam_distances(vertex: np.ndarray, labels: np.ndarray, instance: np.ndarray, vertices: np.ndarray,
                   pixels: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Template distance between the vertices of every two 4-neighbour pixels of one instance (measure 1).

    Args:
        vertex: (H, W) int vertex of each pixel (:func:`pixel_vertices`; -1 not foreground).
        labels: (H, W) int part 0..24. instance: (H, W) int instance id (0 background).
        vertices: (N, 3) float template vertices, metres (rest pose).
        pixels: the pairs (:func:`neighbour_pixel_pairs` of the foreground's instances) when already made.
    Returns:
        ``distance_mm`` (P,) float64 Euclidean distance in mm; ``across`` (P,) bool the two pixels' parts
        differ (a pair across a part seam); ``part_a``, ``part_b`` (P,) int64 the two pixels' parts.
    """
    vertex, labels, instance = np.asarray(vertex), np.asarray(labels), np.asarray(instance)
    if not vertex.shape == labels.shape == instance.shape:
        raise InputError(f"vertex, labels and instance maps must share one shape, got {vertex.shape}, "
                         f"{labels.shape}, {instance.shape}")
    a, b = neighbour_pixel_pairs(np.where(vertex >= 0, instance, 0)) if pixels is None else pixels
    va, vb = vertex.ravel()[a], vertex.ravel()[b]
    v = np.asarray(vertices, np.float64)
    d = 1000.0 * np.linalg.norm(v[va] - v[vb], axis=1)
    pa, pb = labels.ravel()[a].astype(np.int64), labels.ravel()[b].astype(np.int64)
    return {"distance_mm": d, "across": pa != pb, "part_a": pa, "part_b": pb,
            "instance": instance.ravel()[a].astype(np.int64)}


def _nearest_on_outline(points: np.ndarray, outline: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P,) float distance of each point (P, 2) to the closed polygon ``outline`` (K, 2) and (P, 2) the nearest
    point on it."""
    a, b = outline, np.roll(outline, -1, axis=0)
    ab = b - a
    t = np.clip(((points[:, None] - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
    near = a + t[..., None] * ab  # (P, K, 2) the nearest point of each edge
    dist = np.linalg.norm(points[:, None] - near, axis=-1)
    k = dist.argmin(axis=1)
    rows = np.arange(len(points))
    return dist[rows, k], near[rows, k]


def outline_distance(parts: np.ndarray, uv: np.ndarray, outlines: dict) -> tuple[np.ndarray, np.ndarray]:
    """How far each chart point lies from its part's chart outline, and the outline point nearest to it.

    DensePose-RCNN's own (U, V) say where on its part a pixel lies: near the outline, the pixel is at the part's
    border (a seam pixel by DensePose's own account); deep inside, it is not, whatever its neighbour's part.

    Args:
        parts: (P,) int part 1..24. uv: (P, 2) float (U, V).
        outlines: part -> (K, 2) closed polygon in (U, V) (``pipeline.template.densepose_layout.OUTLINE``: the
            atlas' tiles; passed in, the evaluate package reads the template only through its read side).
    Returns:
        distance: (P,) float64 in chart units (inf for a part without an outline); nearest: (P, 2) float64,
        the nearest outline point moved 0.015 towards the outline's mean (inside the chart: a chart locator
        finds it), the point itself where there is no outline.
    """
    parts, uv = np.asarray(parts), np.asarray(uv, np.float64)
    distance, nearest = np.full(len(parts), np.inf), uv.copy()
    for part in np.unique(parts).tolist():
        if part not in outlines:
            continue
        outline = np.asarray(outlines[part], np.float64)
        sel = parts == part
        distance[sel], near = _nearest_on_outline(uv[sel], outline)
        inward = outline.mean(axis=0) - near
        nearest[sel] = near + 0.015 * inward / np.maximum(np.linalg.norm(inward, axis=1, keepdims=True), 1e-12)
    return distance, nearest


def edge_pairs(pixels: tuple[np.ndarray, np.ndarray], seams: dict, uv: np.ndarray, touching: np.ndarray,
               outlines: dict, locator: ChartLocator, vertices: np.ndarray,
               band: float = EDGE_BAND) -> dict[str, np.ndarray]:
    """The pixel pairs across a seam that DensePose's own (U, V) put at both parts' borders, and their distance
    with both pixels moved onto their chart outlines (measure 1, split by what no chart can change).

    A pair across two parts that meet on the template is a *seam pair* when both pixels lie within ``band`` of
    their chart outlines; else one pixel lies inside its part by DensePose's own account (an arm lying against
    the chest, a mislabel): a contact no chart can join. Moving both pixels of a seam pair onto their outlines
    removes DensePose-RCNN's shrinkage (its predictions stop 0.1-0.2 inside the outlines): what remains is where
    the template's charts put the two outlines against each other, the chart layout alone.

    Args:
        pixels: (P,) int64 pairs of flat pixel indices; seams: :func:`seam_distances` of those pairs (its
        ``across``, ``part_a``, ``part_b``). uv: (2, H, W) float. touching: (25, 25) bool
        (:func:`touching_parts`). outlines: as :func:`outline_distance`. locator, vertices (N, 3): as
        :func:`image_checks`.
    Returns:
        ``seam_pair`` (P,) bool; ``on_outline_mm`` (P,) float64 the distance with both pixels on their outlines
        (NaN for the other pairs).
    """
    a, b = pixels
    pa, pb = seams["part_a"], seams["part_b"]
    flat = np.asarray(uv, np.float64).reshape(2, -1).T
    sel = seams["across"] & np.asarray(touching)[pa, pb]
    da, na = outline_distance(pa[sel], flat[a[sel]], outlines)
    db, nb = outline_distance(pb[sel], flat[b[sel]], outlines)
    near = (da < band) & (db < band)
    seam_pair = np.zeros(len(a), bool)
    seam_pair[np.flatnonzero(sel)[near]] = True
    on_outline = np.full(len(a), np.nan)
    if near.any():
        v = np.asarray(vertices, np.float64)
        va, vb = locator.locate(pa[seam_pair], na[near]), locator.locate(pb[seam_pair], nb[near])
        on_outline[seam_pair] = 1000.0 * np.linalg.norm(v[va] - v[vb], axis=1)
    return {"seam_pair": seam_pair, "on_outline_mm": on_outline}


def chart_centres(chart_part: np.ndarray, chart_uv: np.ndarray) -> np.ndarray:
    """(25, 2) float64 the mean (U, V) of each part's chart points (row 0 unused)."""
    out = np.full((N_PARTS + 1, 2), 0.5)
    for p in range(1, N_PARTS + 1):
        sel = np.asarray(chart_part) == p
        if sel.any():
            out[p] = np.asarray(chart_uv, np.float64)[sel].mean(axis=0)
    return out


def expand_uv(labels: np.ndarray, uv: np.ndarray, centres: np.ndarray, factor: float) -> np.ndarray:
    """(2, H, W) float U, V stretched about each part's chart centre by ``factor`` and clipped to [0, 1].

    A diagnostic of DensePose-RCNN's regression: its predicted U, V span about 0.85 of each chart (the 1st-99th
    percentile along a limb), so seam pixels name points inside the charts, not on their edges; a factor of
    1 / 0.85 asks what the seams would measure if the predictions reached the edges.

    Args:
        labels: (H, W) int part 0..24. uv: (2, H, W) float. centres: (25, 2) float (:func:`chart_centres`).
    """
    labels = np.asarray(labels)
    uv = np.array(uv, np.float64)
    fg = (labels >= 1) & (labels <= N_PARTS)
    c = np.asarray(centres, np.float64)[np.where(fg, labels, 0)]  # (H, W, 2)
    stretched = np.clip(c.transpose(2, 0, 1) + (uv - c.transpose(2, 0, 1)) * factor, 0.0, 1.0)
    return np.where(fg[None], stretched, uv)


def touching_parts(chart_part: np.ndarray, chart_vertex: np.ndarray) -> np.ndarray:
    """(25, 25) bool: parts p and q share a seam on the template (a vertex in both charts); index 0 unused.

    A pixel pair across two parts that do not touch on the body is an occlusion contour (an arm in front of
    the chest), which no chart can bring together: :func:`seam_summary` reports those apart."""
    out = np.zeros((N_PARTS + 1, N_PARTS + 1), bool)
    verts = [set(np.asarray(chart_vertex)[np.asarray(chart_part) == p].tolist()) for p in range(N_PARTS + 1)]
    for p in range(1, N_PARTS + 1):
        for q in range(p + 1, N_PARTS + 1):
            out[p, q] = out[q, p] = bool(verts[p] & verts[q])
    return out


def seam_summary(distance_mm: np.ndarray, across: np.ndarray, part_a: np.ndarray, part_b: np.ndarray,
                 instance: np.ndarray | None = None, min_pairs: int = 10, touching: np.ndarray | None = None,
                 seam_pair: np.ndarray | None = None, on_outline_mm: np.ndarray | None = None) -> dict:
    """Median and 90th percentile of the seam distances, inside one part and across a seam.

    Args:
        distance_mm: (P,) float. across: (P,) bool. part_a, part_b: (P,) int (:func:`seam_distances`).
        min_pairs: a seam (a pair of parts) is listed under ``by_seam`` with at least this many pixel pairs.
        instance: (P,) int the pairs' instance: with ``touching``, ``on_body_by_instance`` lists each one's.
        touching: (25, 25) bool (:func:`touching_parts`): splits ``across`` into ``on_body`` (parts that meet on
            the template: the chart seams) and ``occlusion`` (parts that do not).
        seam_pair, on_outline_mm: (P,) :func:`edge_pairs`: with them also ``seam_pairs`` (the on-body pairs at
            both parts' borders by DensePose's own U, V), ``contact`` (the other on-body pairs),
            ``seam_pairs_on_outline`` (their distances with both pixels on the outlines) and
            ``seam_pairs_by_seam`` (``{"a-b": {"as_predicted": ..., "on_outline": ...}}``).
    Returns:
        ``{"inside": {count, median_mm, p90_mm, same_vertex}, "across": {...}, "by_seam": {"a-b": {...}}}``, ``a < b``
        the two parts of a seam, ordered by decreasing median; with ``touching`` also "on_body" and "occlusion".
    """
    d, across = np.asarray(distance_mm, np.float64), np.asarray(across, bool)
    lo, hi = np.minimum(part_a, part_b), np.maximum(part_a, part_b)
    by_seam = {}
    for p, q in sorted({(int(p), int(q)) for p, q in zip(lo[across], hi[across])}):
        sel = across & (lo == p) & (hi == q)
        if sel.sum() >= min_pairs:
            by_seam[f"{p}-{q}"] = _percentiles(d[sel])
    by_seam = dict(sorted(by_seam.items(), key=lambda kv: -kv[1]["median_mm"]))
    out = {"inside": _percentiles(d[~across]), "across": _percentiles(d[across]), "by_seam": by_seam}
    if touching is not None:
        on_body = across & np.asarray(touching)[lo, hi]
        out["on_body"], out["occlusion"] = _percentiles(d[on_body]), _percentiles(d[across & ~on_body])
        if instance is not None:
            inst = np.asarray(instance)
            out["on_body_by_instance"] = {str(k): _percentiles(d[on_body & (inst == k)])
                                          for k in np.unique(inst[on_body]).tolist()}
        if seam_pair is not None:
            pair, outline = np.asarray(seam_pair, bool), np.asarray(on_outline_mm, np.float64)
            out["seam_pairs"], out["contact"] = _percentiles(d[pair]), _percentiles(d[on_body & ~pair])
            out["seam_pairs_on_outline"] = _percentiles(outline[pair])
            out["seam_pairs_by_seam"] = {
                f"{p}-{q}": {"as_predicted": _percentiles(d[sel]), "on_outline": _percentiles(outline[sel])}
                for p, q in sorted({(int(p), int(q)) for p, q in zip(lo[pair], hi[pair])})
                if (sel := pair & (lo == p) & (hi == q)).sum() >= min_pairs}
    return out


def exact_seam_floor(real: dict, exact: dict, draws: int = 20, seed: int = 0, min_pairs: int = 10) -> dict:
    """What the median across parts of a real image would be if its seams read as well as exact charts can.

    Each real seam pair (:func:`edge_pairs`) takes the distance of a random seam pair of the same seam in exactly
    rendered data (the synthetic source's own charts, no prediction error; the pooled exact seam pairs where that
    seam has fewer than ``min_pairs``); the real contacts and occlusion contours keep theirs. The median over all
    pairs across parts then measures the image's own share of the figure: its contacts and occlusions, and the
    template's resolution (both sides read to the nearest vertex), with charts and predictions made perfect.

    Args:
        real, exact: pair arrays of :func:`seam_distances` and :func:`edge_pairs` (``distance_mm``, ``across``,
            ``part_a``, ``part_b``, ``seam_pair``), of the real image and of the exact rendering.
        draws: repetitions of the random draw. seed: its seed.
    Returns:
        ``{"median_mm", "std_mm"}`` over the draws, ``"draws"``, ``"seam_pairs"`` (real) and ``"exact_seam_pairs"``.
    """
    def seams(pairs):
        lo, hi = np.minimum(pairs["part_a"], pairs["part_b"]), np.maximum(pairs["part_a"], pairs["part_b"])
        return lo * (N_PARTS + 1) + hi
    sel = np.asarray(exact["seam_pair"], bool)
    pool, pool_key = np.asarray(exact["distance_mm"], np.float64)[sel], seams(exact)[sel]
    if not len(pool):
        raise InputError("the exact rendering has no seam pair to compare with")
    d = np.asarray(real["distance_mm"], np.float64)
    across, pair = np.asarray(real["across"], bool), np.asarray(real["seam_pair"], bool)
    idx = np.flatnonzero(pair)
    key = seams(real)[idx]
    groups = []  # per real seam: its pairs and the exact distances they are drawn from (made once, not per draw)
    for k in np.unique(key):
        same = pool[pool_key == k]
        groups.append((idx[key == k], same if len(same) >= min_pairs else pool))
    rng = np.random.default_rng(seed)
    medians = []
    for _ in range(draws):
        drawn = d.copy()
        for at, src in groups:
            drawn[at] = rng.choice(src, size=len(at))
        medians.append(np.median(drawn[across]) if across.any() else np.nan)
    return {"median_mm": float(np.mean(medians)), "std_mm": float(np.std(medians)), "draws": draws,
            "seam_pairs": int(pair.sum()), "exact_seam_pairs": int(sel.sum())}


def upright_instances(labels: np.ndarray, instance: np.ndarray,
                      pixel_size: tuple[float, float] = (1.0, 1.0)) -> dict[int, dict]:
    """Which instances stand upright in the image (the rule of measure 2).

    An instance is upright when its foreground box is at least :data:`UPRIGHT_ASPECT` times taller than wide,
    it has at least :data:`UPRIGHT_MIN_PIXELS` foreground pixels, and the mean row of its head pixels
    (:data:`HEAD_PARTS`) is above (smaller than) that of its lower-leg and foot pixels (:data:`LOW_PARTS`);
    an instance that shows no head or no lower leg and foot is not upright.

    Args:
        labels: (H, W) int part 0..24. instance: (H, W) int instance id (0 background).
        pixel_size: a pixel's (height, width) in image pixels: (1, 1) for an image; a crop resampled from a box
            of h x w image pixels to S x S has (h / S, w / S). Only the aspect uses it.
    Returns:
        per instance id: ``{"pixels", "aspect", "head_above_feet", "upright"}`` (``aspect``: box height over
        width, in image units).
    """
    labels, instance = np.asarray(labels), np.asarray(instance)
    if labels.shape != instance.shape:
        raise InputError(f"labels {labels.shape} and instance {instance.shape} maps must share one shape")
    fg = (labels >= 1) & (labels <= N_PARTS)
    out = {}
    for k in np.unique(instance[fg & (instance > 0)]):
        rows, cols = np.nonzero(fg & (instance == k))
        part = labels[rows, cols]
        aspect = ((rows.max() - rows.min() + 1) * pixel_size[0]) / ((cols.max() - cols.min() + 1) * pixel_size[1])
        head, low = np.isin(part, HEAD_PARTS), np.isin(part, LOW_PARTS)
        above = bool(head.any() and low.any() and rows[head].mean() < rows[low].mean())
        out[int(k)] = {"pixels": int(len(rows)), "aspect": float(aspect), "head_above_feet": above,
                       "upright": bool(aspect >= UPRIGHT_ASPECT and len(rows) >= UPRIGHT_MIN_PIXELS and above)}
    return out


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of (P,) x and y; NaN when either is constant."""
    x, y = x - x.mean(), y - y.mean()
    den = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / den) if den > 0 else float("nan")


def along_coordinate(labels: np.ndarray, uv: np.ndarray, along_axis: dict[int, int]) -> np.ndarray:
    """Each pixel's chart coordinate along its part's body segment, as the output's convention lays it.

    Args:
        labels: (H, W) int part 0..24. uv: (2, H, W) float U, V. along_axis: part -> 0 (U runs along the
            segment) or 1 (V), e.g. :data:`pipeline.template.densepose_layout.ALONG_AXIS`; a part not in it has none.
    Returns:
        (H, W) float64: U or V of the pixel's part; NaN for background and parts without an axis.
    """
    labels, uv = np.asarray(labels), np.asarray(uv, np.float64)
    axis = np.full(N_PARTS + 1, -1, np.int64)
    for p, a in along_axis.items():
        axis[p] = a
    a = axis[np.clip(labels, 0, N_PARTS)]
    return np.where(a == 0, uv[0], np.where(a == 1, uv[1], np.nan))


def height_correlations(vertex: np.ndarray, labels: np.ndarray, instance: np.ndarray, heights: np.ndarray,
                        instances: list[int], min_pixels: int = MIN_PART_PIXELS, along: np.ndarray | None = None,
                        min_along: float = MIN_ALONG) -> list[dict]:
    """Per instance and part, the correlation of a pixel's image height with its vertex's template height.

    Args:
        vertex: (H, W) int vertex of each pixel (-1 not foreground). labels: (H, W) int part 0..24.
        instance: (H, W) int instance id. heights: (N,) float each template vertex's height (``vertices @ up``).
        instances: the (upright) instance ids to measure. min_pixels: a part with fewer pixels is skipped, and so
            is a part whose pixels are over twice as wide as tall (lying: its image height is not along the body).
        along: (H, W) float each pixel's along-segment chart coordinate (:func:`along_coordinate`, from the
            output's own U, V: no template involved); a part whose coordinate's |Pearson| with image height is below
            ``min_along`` is skipped (its segment does not run up the image: seen end-on or lying). None: no such test.
    Returns:
        one ``{"instance", "part", "name", "pixels", "r"}`` per (instance, part): ``r`` the Pearson correlation
        of the pixel's height in the image (``-row``) with its vertex's height; positive is right. NaN when
        either side is constant.
    """
    vertex, labels, instance = np.asarray(vertex), np.asarray(labels), np.asarray(instance)
    heights = np.asarray(heights, np.float64)
    out = []
    for k in instances:
        for p in range(1, N_PARTS + 1):
            rows, cols = np.nonzero((instance == k) & (labels == p) & (vertex >= 0))
            if len(rows) < min_pixels or np.ptp(rows) < 0.5 * np.ptp(cols):
                continue  # too small, or lying rather than standing (a forearm reaching forward): no up to compare
            a = None if along is None else along[rows, cols]
            if a is not None and np.isfinite(a).all() and not abs(_pearson(-rows.astype(np.float64), a)) >= min_along:
                continue  # the segment does not run up the image (a forearm seen end-on): no up to compare
            r = _pearson(-rows.astype(np.float64), heights[vertex[rows, cols]])
            out.append({"instance": int(k), "part": p, "name": PART_NAMES[p - 1], "pixels": int(len(rows)), "r": r})
    return out


def height_summary(entries: list[dict]) -> dict:
    """The share of right-sign height correlations (:func:`height_correlations`' entries).

    Returns:
        ``{"entries", "finite", "right_share", "wrong": [entries with r < 0], "wrong_parts": {part: count}}``;
        ``right_share`` is over the entries with a finite ``r`` (NaN when there is none).
    """
    r = np.array([e["r"] for e in entries], np.float64)
    ok = np.isfinite(r)
    wrong = [e for e in entries if np.isfinite(e["r"]) and e["r"] < 0]
    parts: dict[int, int] = {}
    for e in wrong:
        parts[e["part"]] = parts.get(e["part"], 0) + 1
    return {"entries": len(entries), "finite": int(ok.sum()),
            "right_share": float((r[ok] > 0).mean()) if ok.any() else float("nan"),
            "wrong": wrong, "wrong_parts": dict(sorted(parts.items()))}


def neighbour_region_pairs(parts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The point pairs whose parts lie in neighbouring body regions (:data:`NEIGHBOUR_REGIONS`).

    Args:
        parts: (P,) int part 1..24 of each point.
    Returns:
        i, j: (Q,) int64 the pairs' point indices, ``i < j``; pairs inside one region are never among them.
    """
    parts = np.asarray(parts, np.int64)
    if parts.size and (parts.min() < 1 or parts.max() > N_PARTS):
        raise InputError(f"point parts must lie in 1..{N_PARTS}, got {parts.min()}..{parts.max()}")
    region = COARSE_OF_PART[parts]
    table = np.zeros((len(SEGMENTS) + 1,) * 2, bool)
    for a, b in NEIGHBOUR_REGIONS:
        table[_REGION_ID[a], _REGION_ID[b]] = table[_REGION_ID[b], _REGION_ID[a]] = True
    i, j = np.triu_indices(len(parts), k=1)
    keep = table[region[i], region[j]]
    return i[keep].astype(np.int64), j[keep].astype(np.int64)


def annotated_rank_correlation(xy: np.ndarray, parts: np.ndarray, uv: np.ndarray, locator: ChartLocator,
                               vertices: np.ndarray) -> dict:
    """Spearman correlation of image and template distances over neighbouring-region point pairs (measure 3).

    Args:
        xy: (P, 2) float image position (x, y) of each annotated point, pixels.
        parts: (P,) int part 1..24. uv: (P, 2) float (U, V) in [0, 1].
        locator: the template's charts. vertices: (N, 3) float template vertices, metres.
    Returns:
        ``{"rho", "p_value", "pairs", "points"}``; ``rho`` NaN when there are fewer than 3 pairs.
    """
    xy, uv = np.asarray(xy, np.float64), np.asarray(uv, np.float64)
    parts = np.asarray(parts, np.int64)
    if xy.shape != (len(parts), 2) or uv.shape != (len(parts), 2):
        raise InputError(f"xy and uv must be (P, 2) with P = {len(parts)} points, got {xy.shape}, {uv.shape}")
    i, j = neighbour_region_pairs(parts)
    vert = locator.locate(parts, uv)
    v = np.asarray(vertices, np.float64)[vert]
    image_d = np.linalg.norm(xy[i] - xy[j], axis=1)
    template_d = 1000.0 * np.linalg.norm(v[i] - v[j], axis=1)
    rho, pval = (spearmanr(image_d, template_d) if len(i) >= 3 else (float("nan"), float("nan")))
    return {"rho": float(rho), "p_value": float(pval), "pairs": int(len(i)), "points": int(len(parts))}


def image_checks(labels: np.ndarray, uv: np.ndarray, instance: np.ndarray, locator: ChartLocator,
                 vertices: np.ndarray, up: np.ndarray, touching: np.ndarray | None = None,
                 outlines: dict | None = None, along_axis: dict[int, int] | None = None) -> dict:
    """Measures 1 and 2 on one image with an instance map (DensePose-RCNN's IUV and INDS images).

    Args:
        labels: (H, W) int part 0..24. uv: (2, H, W) float U, V. instance: (H, W) int instance id (0 background;
            any ids, e.g. the detector's ranks). locator: the template's charts. vertices: (N, 3) float metres.
        up: (3,) float the template's up direction. touching: as :func:`seam_summary`. outlines: the charts'
            outlines (:func:`outline_distance`); with ``touching``, the seam pairs are told from contacts
            (:func:`edge_pairs`). along_axis: the output's along-segment chart axis per part
            (:func:`along_coordinate`): parts whose segment does not run up the image are left out of measure 2.
    Returns:
        ``{"seams": seam_summary, "upright": upright_instances, "heights": height_summary,
        "height_entries": height_correlations, "pairs": the pair arrays (seam_distances, edge_pairs)}``.
    """
    labels, instance = np.asarray(labels), np.asarray(instance)
    _check_maps(labels, np.asarray(uv), instance)
    vertex = pixel_vertices(labels, uv, locator)
    pixels = neighbour_pixel_pairs(np.where(vertex >= 0, instance, 0))  # made once for both measures
    pairs = seam_distances(vertex, labels, instance, vertices, pixels)
    if touching is not None and outlines is not None:
        pairs.update(edge_pairs(pixels, pairs, uv, touching, outlines, locator, vertices))
    seams = seam_summary(**pairs, touching=touching)
    upright = upright_instances(labels, instance)
    heights = np.asarray(vertices, np.float64) @ np.asarray(up, np.float64)
    along = None if along_axis is None else along_coordinate(labels, uv, along_axis)
    entries = height_correlations(vertex, labels, instance, heights, [k for k, u in upright.items() if u["upright"]],
                                  along=along)
    return {"seams": seams, "upright": upright, "heights": height_summary(entries), "height_entries": entries,
            "pairs": pairs}


def crop_checks(labels: np.ndarray, uv: np.ndarray, pixel_size: np.ndarray, locator: ChartLocator,
                vertices: np.ndarray, up: np.ndarray, touching: np.ndarray | None = None,
                along_axis: dict[int, int] | None = None, outlines: dict | None = None) -> dict:
    """Measures 1 and 2 over a stack of crops, each one instance (the synthetic source's crops), pooled.

    Args:
        labels: (n, S, S) int part 0..24. uv: (n, 2, S, S) float U, V.
        pixel_size: (n, 2) float each crop pixel's (height, width) in image pixels (box side / S).
        locator, vertices (N, 3), up (3,), touching, outlines, along_axis: as :func:`image_checks`.
    Returns:
        as :func:`image_checks` (the pairs pooled over the crops), the instance id of crop ``i`` being ``i + 1``.
    """
    labels, uv, pixel_size = np.asarray(labels), np.asarray(uv), np.asarray(pixel_size, np.float64)
    n = len(labels)
    if labels.ndim != 3 or uv.shape != (n, 2, *labels.shape[1:]) or pixel_size.shape != (n, 2):
        raise InputError(f"crops: labels must be (n, S, S), uv (n, 2, S, S) and pixel_size (n, 2), got "
                         f"{labels.shape}, {uv.shape}, {pixel_size.shape}")
    heights = np.asarray(vertices, np.float64) @ np.asarray(up, np.float64)
    edges = touching is not None and outlines is not None
    pooled = {"distance_mm": [], "across": [], "part_a": [], "part_b": [],
              **({"seam_pair": [], "on_outline_mm": []} if edges else {})}
    upright, entries = {}, []
    for i in range(n):
        vertex = pixel_vertices(labels[i], uv[i], locator)
        inst = np.where(vertex >= 0, i + 1, 0)
        pixels = neighbour_pixel_pairs(inst)
        pairs = seam_distances(vertex, labels[i], inst, vertices, pixels)
        if edges:
            pairs.update(edge_pairs(pixels, pairs, uv[i], touching, outlines, locator, vertices))
        for key, value in pairs.items():
            if key in pooled:  # not the instance: one crop, one instance
                pooled[key].append(value)
        u = upright_instances(labels[i], inst, tuple(pixel_size[i]))
        upright.update(u)
        along = None if along_axis is None else along_coordinate(labels[i], uv[i], along_axis)
        entries += height_correlations(vertex, labels[i], inst, heights, [k for k, e in u.items() if e["upright"]],
                                       along=along)
    empty = {"distance_mm": np.zeros(0), "across": np.zeros(0, bool), "part_a": np.zeros(0, np.int64),
             "part_b": np.zeros(0, np.int64), "seam_pair": np.zeros(0, bool), "on_outline_mm": np.zeros(0)}
    pairs = {k: np.concatenate(v) if v else empty[k] for k, v in pooled.items()}
    seams = seam_summary(**pairs, touching=touching)
    return {"seams": seams, "upright": upright, "heights": height_summary(entries), "height_entries": entries,
            "pairs": pairs}
