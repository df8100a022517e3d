"""What in the default data's keypoints costs DP3D its accuracy: oracle variants of ``data/keypoints.zarr`` made from
the synthetic ground truth, each trained and evaluated with the `train` and `evaluate` stages' own commands (as
dvc.yaml runs them) at one seed, each run's metrics a row of ``metrics/paper/keypoint_oracles.csv`` (a rerun
replaces its row)::

    python scripts/keypoint_oracles.py --variants true_xy true_visible --seeds 0 1 2
    python scripts/keypoint_oracles.py --variants plain --seeds 0        # must give def-t1-dp3d-s0's 142.89 mm

Variants (``gt/pixels``: each vertex's true projection; ``gt/visible``: the renderer's vertex visibility):

- ``plain``: the store as the pipeline made it (a check of this harness against the DVC runs);
- ``drop_far``: keypoints more than 8 crop pixels from their vertex's true projection weigh 0 (``loss.confidence``
  on, the confidence replaced by 0/1): the bound of any robust loss or confidence that finds the gross errors;
- ``true_xy``: every visible keypoint moved to its vertex's true projection (the same keypoints, no position error);
- ``true_visible``: ``true_xy``, keeping only the keypoints whose vertex is truly visible (a pixel that names a
  hidden vertex, by a mirror patch or at the silhouette, dropped);
- ``hidden_unnamed``: only truly visible keypoints, at their corrupted positions (a perfect detector of the keypoints
  that name hidden vertices, nothing else);
- ``facing_visible``: the store unchanged but for ``count`` 0 where the vertex is hidden, so that only the facing
  term stops hearing those keypoints (it weighs the evidence by ``count``; the model's input and the re-projection
  keep them);
- ``facing_gate``: the store unchanged, ``loss.facing_gate`` 0.2;
- ``self_drop`` (no ground truth: a second round): keypoints whose vertex the trained default model
  (``models/model.pt``) turns away from the camera (mesh normal z > 0.3) dropped, as ``hidden_unnamed`` drops the
  truly hidden ones, and a model trained anew on the rest;
- ``self_blend`` (no ground truth: a second round): ``self_drop``, and every kept keypoint moved half-way to its
  vertex's projection in the trained default model's reconstruction (round 1's projections lie nearer the truth
  than the keypoints: mean 3.0 against 3.6 crop pixels on the truly visible ones, half-way 2.8);
- ``self_visibility``, ``self_visibility_z3`` (no ground truth: one round): the store unchanged,
  ``loss.self_visibility`` 0.25 (with ``loss.self_visibility_z`` 0.3);
- ``priors_div7``: the store unchanged, the weights of canonicalisation, ARAP, entropy and facing divided by 7 (what
  the heteroscedastic scale, median 0.14, does to them relative to the 2D term).

Every run uses ``common.threads`` 1 and ``OMP_NUM_THREADS`` 1 (as the default-data tables); the work folder keeps
each variant's store and each run's params, model and logs. Needs a synthetic source (ground truth in the store).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python scripts/keypoint_oracles.py` from anywhere
    sys.path.insert(0, str(ROOT))

from experiments.runner import Run, Table, atomic_write, csv_text, read_rows, upsert  # noqa: E402
FAR_PX = 8.0  # drop_far: a keypoint this far from its vertex's true projection (crop pixels) is a gross error
FACING_GATE = 0.2
SELF_DROP_Z = 0.3  # self_drop: a vertex whose normal z in the round-1 prediction exceeds this is turned away
SELF_BLEND = 0.5  # self_blend: the share of the way from each kept keypoint to round 1's projection of its vertex
SELF_VISIBILITY = {"self_visibility": {"self_visibility": 0.25},
                   "self_visibility_z3": {"self_visibility": 0.25, "self_visibility_z": 0.3}}
# the loss options a variant sets in its run's params (priors_div7's depend on params.yaml: in run())
LOSS_OPTIONS = {"drop_far": {"confidence": True}, "facing_gate": {"facing_gate": FACING_GATE}, **SELF_VISIBILITY}
COLUMNS = ("variant", "seed", "mpjpe_mm", "re14_mm", "xy_mm", "z_mm", "flat_mpjpe_mm", "parts_used",
           "regions_distinct", "wall_s")
STORE_VARIANTS = ("drop_far", "true_xy", "true_visible", "hidden_unnamed", "facing_visible")
SELF_ROUNDS = ("self_drop", "self_blend")  # variants that read a round-1 model
VARIANTS = ("plain", *STORE_VARIANTS, "facing_gate", "priors_div7", *SELF_ROUNDS, *SELF_VISIBILITY)
PRIORS = ("canonicalisation", "arap", "entropy", "facing")


def _kept(kept: np.ndarray, confidence: np.ndarray) -> dict[str, np.ndarray]:
    """Only the keypoints ``kept`` (n, N) bool stay visible; the others' confidence is 0."""
    return {"visible": kept, "confidence": np.where(kept, confidence, 0).astype(np.float16)}


def oracle_arrays(variant: str, xy: np.ndarray, visible: np.ndarray, count: np.ndarray, confidence: np.ndarray,
                  true_xy: np.ndarray, true_visible: np.ndarray) -> dict[str, np.ndarray]:
    """The keypoint arrays a variant changes (module docstring). xy, true_xy: (n, N, 2) float32 crop pixels;
    visible, true_visible: (n, N) bool; count: (n, N) uint16; confidence: (n, N) float16."""
    shown = visible & true_visible
    if variant == "drop_far":
        near = np.linalg.norm(xy - true_xy, axis=-1) <= FAR_PX
        return {"confidence": np.where(visible & near, 1.0, 0.0).astype(np.float16)}
    if variant == "true_xy":
        return {"xy": np.where(visible[..., None], true_xy, xy).astype(np.float32)}
    if variant == "true_visible":
        return _kept(shown, confidence) | {"xy": np.where(shown[..., None], true_xy, xy).astype(np.float32)}
    if variant == "hidden_unnamed":
        return _kept(shown, confidence)
    if variant == "facing_visible":
        return {"count": np.where(visible & ~true_visible, 0, count).astype(count.dtype)}
    raise ValueError(f"no store variant {variant!r}; one of {STORE_VARIANTS}")


def self_drop_arrays(visible: np.ndarray, confidence: np.ndarray, turned: np.ndarray) -> dict[str, np.ndarray]:
    """``self_drop``'s arrays: the keypoints a trained model turns away dropped. visible, turned: (n, N) bool (turned:
    :meth:`pipeline.train.rounds.FirstRound.turned_rows`); confidence: (n, N) float16."""
    return _kept(visible & ~turned, confidence)


def self_blend_arrays(xy: np.ndarray, visible: np.ndarray, confidence: np.ndarray, turned: np.ndarray,
                      projected: np.ndarray, share: float = SELF_BLEND) -> dict[str, np.ndarray]:
    """``self_blend``'s arrays: ``self_drop``'s, and each kept keypoint moved ``share`` of the way to ``projected``.
    xy, projected: (n, N, 2) float (projected: round 1's reconstruction's x, y); other shapes as
    :func:`self_drop_arrays`."""
    out = self_drop_arrays(visible, confidence, turned)
    kept = out["visible"][..., None]
    return out | {"xy": np.where(kept, (1 - share) * xy + share * projected, xy).astype(np.float32)}


def round_one(model: Path, template: Path):
    """Round 1 as ``train.rounds: 2`` uses it: ``model``'s trained network (the checkpoint read once) in a
    :class:`~pipeline.train.rounds.FirstRound` turning away normal z > ``SELF_DROP_Z``."""
    from pipeline.template.file import load_template
    from pipeline.train.checkpoint import load_checkpoint
    from pipeline.train.rounds import FirstRound

    return FirstRound(load_checkpoint(model)[0], load_template(template).faces, SELF_DROP_Z)


def _store_copy(source: Path, out: Path):
    """A fresh copy of the keypoints store at ``out`` (a previous one replaced), open for writing."""
    import zarr

    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(source, out)
    return zarr.open(str(out), mode="r+")


def _write(z, arrays: dict[str, np.ndarray]) -> None:
    for key, value in arrays.items():
        z[key][:] = value


def make_self_store(variant: str, source: Path, out: Path, model: Path, template: Path) -> Path:
    """A copy of the keypoints store with ``self_drop``'s (:func:`self_drop_arrays`) or ``self_blend``'s
    (:func:`self_blend_arrays`) arrays, round 1 being ``model``."""
    z = _store_copy(source, out)
    xy, visible, confidence = z["xy"][:], z["visible"][:].astype(bool), z["confidence"][:]
    first = round_one(model, template)
    turned = first.turned_rows(xy, visible)  # (n, N) bool: the keypoints round 1 turns away
    if variant == "self_drop":
        _write(z, self_drop_arrays(visible, confidence, turned))
    else:
        from pipeline.train.checkpoint import reconstruct

        projected = reconstruct(first.model, xy, visible).numpy()[..., :2]  # round 1's x, y of every vertex
        _write(z, self_blend_arrays(xy, visible, confidence, turned, projected))
    return out


def make_store(variant: str, source: Path, out: Path) -> Path:
    """A copy of the keypoints store with the variant's arrays replaced."""
    z = _store_copy(source, out)
    if "gt/pixels" not in z or "gt/visible" not in z:
        raise SystemExit(f"{source}: no gt/pixels or gt/visible: the oracles need a synthetic source's ground truth")
    arrays = {k: z[k][:] for k in ("xy", "visible", "count", "confidence")}
    _write(z, oracle_arrays(variant, **arrays, true_xy=z["gt/pixels"][:], true_visible=z["gt/visible"][:]))
    return out


def run(variant: str, seed: int, work: Path, store: Path, params: Path) -> dict:
    """Train and evaluate one variant at one seed with the stages' commands on ``store`` (the variant's keypoints,
    :func:`make_store`); its metrics/eval.json values."""
    d = work / f"{variant}-s{seed}"
    d.mkdir(parents=True, exist_ok=True)
    p = yaml.safe_load(params.read_text())
    p["common"]["threads"], p["train"]["seed"] = 1, seed
    p["loss"].update(LOSS_OPTIONS.get(variant, {}))
    if variant == "priors_div7":
        p["loss"].update({k: p["loss"][k] / 7 for k in PRIORS})
    (d / "params.yaml").write_text(yaml.safe_dump(p))
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    common = ["--params", str(d / "params.yaml"), "--keypoints", str(store), "--template", "data/template.npz"]
    start = time.time()
    for name, argv in (("train", ["--lbo", "data/lbo.npz", "--out", str(d / "model.pt"), "--live", str(d / "train")]),
                       ("evaluate", ["--model", str(d / "model.pt"), "--metrics", str(d / "eval.json"),
                                     "--parts", str(d / "eval_parts.csv"), "--segmentation", str(d / "seg.csv"),
                                     "--reports", str(d / "reports"), "--iuv", "data/iuv.zarr",
                                     "--densepose", "data/densepose.zarr"])):
        with open(d / f"{name}.log", "w") as log:
            subprocess.run([sys.executable, "-m", f"stages.{name}", *common, *argv], cwd=ROOT, env=env, check=True,
                           stdout=log, stderr=subprocess.STDOUT)
    e = json.loads((d / "eval.json").read_text())
    return {k: e.get(k) for k in COLUMNS[2:-1]} | {"variant": variant, "seed": seed,
                                                   "wall_s": round(time.time() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--keypoints", type=Path, default=ROOT / "data" / "keypoints.zarr")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "model.pt", help="self_drop's and self_blend's round-1 model")
    ap.add_argument("--work", type=Path, default=Path("/tmp/keypoint_oracles"))
    ap.add_argument("--out", type=Path, default=ROOT / "metrics" / "paper" / "keypoint_oracles.csv")
    args = ap.parse_args(argv)
    table = Table(args.out.name, COLUMNS[:2], COLUMNS[2:])
    for variant in args.variants:  # a variant's store is made once, for all its seeds
        store = args.keypoints
        if variant in STORE_VARIANTS:
            store = make_store(variant, args.keypoints, args.work / f"{variant}.zarr")
        elif variant in SELF_ROUNDS:
            store = make_self_store(variant, args.keypoints, args.work / f"{variant}.zarr", args.model,
                                    ROOT / "data" / "template.npz")
        for seed in args.seeds:
            row = run(variant, seed, args.work, store, args.params)
            rows = upsert(read_rows(args.out), table, Run(variant, (variant, str(seed)), (), "keypoint_oracles"), row)
            atomic_write(args.out, csv_text(rows, COLUMNS))  # a rerun replaces its row
            print(f"{variant} seed {seed}: MPJPE {row['mpjpe_mm']:.1f} mm, regions distinct {row['regions_distinct']}, "
                  f"{row['wall_s']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
