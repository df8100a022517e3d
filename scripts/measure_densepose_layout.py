"""Measures DensePose's chart layout (the tables of pipeline/template/densepose_layout.py) on DensePose's own
files, which stay outside the repository (CC BY-NC 4.0; ../shared/densepose-reference/ by default):

    python scripts/measure_densepose_layout.py [--reference ../shared/densepose-reference]

Prints, per part: the share of pixels whose chart keeps the orientation seen from outside (demo IUV), the
median (U, V) where each neighbouring part touches it (demo IUV), and the chart's outline in the atlas
(texture_atlas_200.png: tile p at column (p-1)//6, row (p-1)%6 of 200 x 200 pixels; U = column / 199,
V = 1 - row / 199), simplified to a polygon with its four corners (the outline points nearest the tile's
corners), and where the armholes and the neck lie in the torso charts (real seams only). The printed OUTLINE and
OUTLINE_CORNERS are pasted into densepose_layout.py; the other figures are quoted there beside their tables.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

TILE = 200


def tile_outline(atlas: np.ndarray, part: int, tol_px: float = 2.0) -> tuple[np.ndarray, list[int]]:
    """(K, 2) the outline polygon of ``part``'s chart in (U, V), counter-clockwise; the indices of the points
    nearest the tile's corners (0, 0), (1, 0), (1, 1), (0, 1)."""
    c, r = (part - 1) // 6, (part - 1) % 6
    tile = atlas[r * TILE:(r + 1) * TILE, c * TILE:(c + 1) * TILE]
    gray = tile if tile.ndim == 2 else tile.max(axis=2)
    mask = (gray > 60).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask)
    mask = (lab == 1 + np.argmax(stats[1:, cv2.CC_STAT_AREA])).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    poly = cv2.approxPolyDP(max(contours, key=len), tol_px, True)[:, 0, :].astype(np.float64)
    uv = np.stack([poly[:, 0] / (TILE - 1), 1.0 - poly[:, 1] / (TILE - 1)], axis=1)
    area = 0.5 * np.sum(uv[:, 0] * np.roll(uv[:, 1], -1) - np.roll(uv[:, 0], -1) * uv[:, 1])
    if area < 0:
        uv = uv[::-1]
    corners = [int(np.argmin(np.linalg.norm(uv - np.array(k), axis=1))) for k in ((0, 0), (1, 0), (1, 1), (0, 1))]
    shift = corners[0]
    uv = np.roll(uv, -shift, axis=0)
    corners = [(k - shift) % len(uv) for k in corners]
    return np.clip(uv, 0.0, 1.0), corners


def orientation_shares(iuv: np.ndarray, inds: np.ndarray) -> dict[int, float]:
    """Per part, the share of interior pixels with det(d(U, V)/d(x, -y)) > 0."""
    part = iuv[..., 0].astype(np.int64)
    u, v = iuv[..., 1] / 255.0, iuv[..., 2] / 255.0
    key = part * 1000 + inds.astype(np.int64)
    inside = part > 0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            inside &= np.roll(np.roll(key, dy, 0), dx, 1) == key
    ux = (np.roll(u, -1, 1) - np.roll(u, 1, 1)) / 2
    uy = -(np.roll(u, -1, 0) - np.roll(u, 1, 0)) / 2
    vx = (np.roll(v, -1, 1) - np.roll(v, 1, 1)) / 2
    vy = -(np.roll(v, -1, 0) - np.roll(v, 1, 0)) / 2
    det = ux * vy - uy * vx
    out = {}
    for p in range(1, 25):
        d = det[inside & (part == p) & (np.abs(det) > 1e-5)]
        out[p] = float((d > 0).mean()) if len(d) else float("nan")
    return out


def _touching(iuv: np.ndarray, inds: np.ndarray):
    """Per 4-neighbour shift: part (H, W) int64, the neighbour's part, U, V (H, W, 2) of both and (H, W) bool the
    two pixels of one person, both foreground, of different parts."""
    part = iuv[..., 0].astype(np.int64)
    uv = iuv[..., 1:3] / 255.0
    for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        other = np.roll(np.roll(part, dy, 0), dx, 1)
        same = (np.roll(np.roll(inds, dy, 0), dx, 1) == inds) & (inds > 0)
        yield part, other, uv, np.roll(np.roll(uv, dy, 0), dx, 1), same & (part > 0) & (other > 0) & (other != part)


def seam_medians(iuv: np.ndarray, inds: np.ndarray, min_pixels: int = 8) -> dict[tuple[int, int], tuple]:
    """(part, neighbour) -> (pixels, median U, median V) of ``part``'s pixels touching ``neighbour``."""
    acc: dict[tuple[int, int], list] = {}
    for part, other, uv, _, seam in _touching(iuv, inds):
        for y, x in zip(*np.nonzero(seam)):
            acc.setdefault((int(part[y, x]), int(other[y, x])), []).append(uv[y, x])
    return {k: (len(v), *np.median(np.array(v), axis=0)) for k, v in sorted(acc.items()) if len(v) >= min_pixels}


def torso_landmarks(iuv: np.ndarray, inds: np.ndarray) -> dict[tuple[int, int], tuple]:
    """(torso part, neighbour) -> (pixels, U min, U max, V min, V max) of the torso's pixels on a *real* seam with
    an upper arm (the arm pixel by its own proximal edge, U < 0.2) or the head (the head pixel by its neck edge,
    V < 0.25), not where an arm lies in front of the torso: the armholes' and the neck's place in the torso charts
    (TORSO_ARMPIT_U, TORSO_NECK_V)."""
    acc: dict[tuple[int, int], list] = {}
    for part, other, uv, other_uv, seam in _touching(iuv, inds):
        for torso in (1, 2):
            for q in (15, 16, 17, 18, 23, 24):
                m = (part == torso) & (other == q) & seam
                m &= (other_uv[..., 0] < 0.2) if q < 23 else (other_uv[..., 1] < 0.25)
                if m.any():
                    acc.setdefault((torso, q), []).append(uv[m])
    out = {}
    for k, v in sorted(acc.items()):
        a = np.concatenate(v)
        out[k] = (len(a), a[:, 0].min(), a[:, 0].max(), a[:, 1].min(), a[:, 1].max())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", default=str(Path(__file__).resolve().parents[2] / "shared/densepose-reference"))
    args = ap.parse_args(argv)
    ref = Path(args.reference)
    atlas = cv2.imread(str(ref / "texture_atlas_200.png"), cv2.IMREAD_GRAYSCALE)
    iuv = cv2.imread(str(ref / "demo_im_IUV.png"))
    inds = cv2.imread(str(ref / "demo_im_INDS.png"), cv2.IMREAD_UNCHANGED)
    if atlas is None or iuv is None or inds is None:
        print(f"cannot read DensePose's files in {ref}", file=sys.stderr)
        return 2
    print("ORIENTATION_SHARE =", {p: round(s, 2) for p, s in orientation_shares(iuv, inds).items()})
    for (p, q), (n, u, v) in seam_medians(iuv, inds).items():
        print(f"seam {p}|{q}: {n} pixels, median U {u:.2f} V {v:.2f}")
    for (p, q), (n, u0, u1, v0, v1) in torso_landmarks(iuv, inds).items():
        print(f"real seam {p}|{q}: {n} pixels, torso U {u0:.2f}-{u1:.2f}, V {v0:.2f}-{v1:.2f}")
    print("OUTLINE = {")
    corners = {}
    for p in range(1, 25):
        uv, corners[p] = tile_outline(atlas, p)
        print(f"    {p}: ({', '.join(f'({a:.3f}, {b:.3f})' for a, b in uv)}),")
    print("}")
    print("OUTLINE_CORNERS =", corners)
    return 0


if __name__ == "__main__":
    sys.exit(main())
