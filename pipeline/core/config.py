"""The one typed loader of ``params.yaml``.

Every stage reads its parameters through :func:`load_params`. Each section of ``params.yaml`` is a
frozen dataclass below; each field carries its allowed range or choices in its metadata, so that an
unknown key, a wrong type or an out-of-range value fails with an error naming the key and what is
allowed, before any work starts::

    >>> load_params_dict({"lbo": {"k": -3}})
    Traceback (most recent call last):
    ...
    pipeline.core.config.ParamsError: params: lbo.k = -3 is out of range: allowed an integer in [2, 4096]

Every problem is reported, not only the first: the message lists each key. Constraints between
keys of different sections (``model.lbo_basis`` <= ``lbo.k``, ``model.parts`` within the basis, a CSE
``densepose.kind: cse`` with CSE data, ...) are checked too, by :class:`Params` (:data:`CROSS_SECTION`),
so a stage never starts on params that a later stage would refuse.

Adding a parameter: add a field with ``param(...)`` to its section, document it in ``params.yaml``,
and list it under the stage's ``params`` in ``dvc.yaml``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.core.errors import InputError, UserError

__all__ = [
    "ParamsError",
    "CommonParams",
    "TemplateParams",
    "LboParams",
    "DenseposeParams",
    "SyntheticParams",
    "CorruptionParams",
    "ClusterParams",
    "Detectron2Params",
    "PrecomputedParams",
    "NetworkParams",
    "NetworkSourceParams",
    "IuvParams",
    "KeypointsParams",
    "ModelParams",
    "LossParams",
    "TrainParams",
    "EvalParams",
    "Params",
    "load_params",
    "load_params_dict",
    "CROSS_SECTION",
    "has_truth",
    "UNSET_PATH",
    "path_param",
]


class ParamsError(UserError, ValueError):
    """A key of ``params.yaml`` is unknown, of the wrong type or out of range."""


def param(default: Any, doc: str, *, lo: float | None = None, hi: float | None = None,
          choices: tuple | None = None) -> Any:
    """A dataclass field with its documentation and allowed values.

    Args:
        default: value used when the key is absent.
        doc: one line on what the key does (shown in errors).
        lo, hi: inclusive numeric bounds (None: unbounded).
        choices: the allowed values of a categorical key.
    """
    return field(default=default, metadata={"doc": doc, "lo": lo, "hi": hi, "choices": choices})


# the value of a path param left unset in params.yaml: DVC needs an existing path for every dependency it is
# given, and dvc.yaml names each user-named input (``${precomputed.dump}``, ...) as one, so that editing the
# file makes ``dvc status`` and ``dvc repro`` see the change; this file in git stands for "not given" (read as "")
UNSET_PATH = "sources/unset"


def path_param(doc: str) -> Any:
    """A string field naming a user's input file or folder (``""`` or :data:`UNSET_PATH`: not given), which
    dvc.yaml lists among its stage's dependencies."""
    return field(default="", metadata={"doc": doc, "lo": None, "hi": None, "choices": None, "path": True})


@dataclass(frozen=True)
class CommonParams:
    """Knobs shared by every stage."""

    seed: int = param(0, "seed of every random generator", lo=0, hi=2**32 - 1)
    device: str = param("auto", "torch device: auto (CUDA when present), cpu or cuda",
                        choices=("auto", "cpu", "cuda"))
    threads: int = param(2, "CPU threads of the numerics (torch, BLAS, OpenCV) in the stages after lbo; fixed "
                         "here, not by the machine, so results are byte-identical on any machine",
                         lo=1, hi=1024)


@dataclass(frozen=True)
class ClusterParams:
    """How the stages spread their work over processes and machines, never what they compute: the densepose,
    iuv and keypoints outputs are the same whatever its values (they do not depend on it); ``processes``
    changes train's and network's float rounding (their data-parallel sums), so those two depend on it."""

    workers: int = param(2, "local Dask worker processes of the iuv and keypoints stages (1: the stage's own "
                         "process)", lo=1, hi=1024)
    scheduler: str = param("", "address of a running Dask scheduler (tcp://host:8786) whose workers run the iuv "
                           "and keypoints chunks instead of local processes; empty: local")
    processes: int = param(1, "processes of the torch stages (densepose, network, train) on this machine: > 1 runs "
                           "them under torchrun, one process a GPU (gloo processes on CPU)", lo=1, hi=1024)


@dataclass(frozen=True)
class TemplateParams:
    """Stage ``template``: the canonical mesh, its 24-chart atlas and tables."""

    source: str = param("anny", "where the template comes from", choices=("anny", "smpl", "cse"))
    topology: str = param("notoes_collapse10pc", "Anny topology (source: anny)",
                          choices=("notoes_collapse10pc", "notoes_collapse5pc", "notoes", "anny"))
    smpl_model: str = path_param("path to an SMPL model file, .pkl or .npz (source: smpl)")
    smpl_uv: str = path_param("path to DensePose's UV_Processed.mat (source: smpl)")
    charts: str = param("densepose", "chart convention of the anny template: densepose (DensePose's U, V: reads real "
                        "DensePose output) or own (the project's flattening; only for data it renders itself)",
                        choices=("densepose", "own"))
    cse_dim: int = param(16, "dimension D of the CSE vertex embeddings (sources anny, smpl)", lo=1, hi=256)
    cse_mesh_file: str = path_param("path to DensePose's CSE mesh file, e.g. smpl_27554.pkl (source: cse)")
    cse_weights: str = path_param("path to the CSE model weights holding the mesh's vertex embeddings (source: cse)")
    cse_mesh: str = param("smpl_27554", "name of the CSE mesh in the weights' embedder (source: cse)")
    parts_from: str = param("", "source cse: 'smpl' (the SMPL template of smpl_model/smpl_uv) or a template .npz "
                            "of the same body and frame, giving the CSE mesh its parts and joints")
    components: str = param("keep_largest", "a mesh with several components: keep_largest or refuse",
                            choices=("keep_largest", "refuse"))


@dataclass(frozen=True)
class LboParams:
    """Stage ``lbo``: the Laplace-Beltrami eigenbasis of the template."""

    k: int = param(64, "number K of smallest eigenpairs to compute", lo=2, hi=4096)


@dataclass(frozen=True)
class Detectron2Params:
    """Stage ``densepose``, ``densepose.source: detectron2``: run a DensePose R-CNN on an image folder."""

    config: str = path_param("DensePose config file (.yaml from the DensePose project's configs/)")
    weights: str = path_param("model weights file (.pkl or .pth), a local path; nothing is downloaded")
    images: str = path_param("folder of input images (jpg, jpeg, png, bmp, tif, tiff, webp), read sorted")
    score_threshold: float = param(0.8, "keep person detections with at least this score", lo=0.0, hi=1.0)
    max_instances: int = param(0, "keep at most this many best-scoring people per image (0: all)", lo=0, hi=1000)
    batch_size: int = param(4, "images per forward pass", lo=1, hi=256)
    test_list: str = path_param("file of image names (one a line) that form the test split; empty: all train")


@dataclass(frozen=True)
class PrecomputedParams:
    """Stage ``densepose``, ``densepose.source: precomputed``: import DensePose results made elsewhere."""

    format: str = param("dump", "dump (apply_net.py dump file) or iuv_png (IUV PNG folder + boxes JSON)",
                        choices=("dump", "iuv_png"))
    dump: str = path_param("format dump: the file written by `apply_net.py dump`")
    image_root: str = path_param("format dump: folder of the dump's images (their sizes size the full-frame "
                            "export); empty: their file_name as written")
    iuv_folder: str = path_param("format iuv_png: folder of full-frame IUV PNGs (and instance-index PNGs)")
    boxes_json: str = path_param("format iuv_png: JSON listing each image's IUV PNG, boxes and scores")
    score_threshold: float = param(0.0, "keep instances with at least this score", lo=0.0, hi=1.0)
    max_instances: int = param(0, "keep at most this many best-scoring instances per image (0: all)", lo=0, hi=1000)
    test_list: str = path_param("file of image names (one a line) that form the test split; empty: all train")


@dataclass(frozen=True)
class NetworkParams:
    """Stages ``images`` and ``network``: the correspondence network and the rendered images it learns from."""

    train_bodies: int = param(150, "bodies rendered for training (drawn apart from the synthetic section's bodies)",
                              lo=1, hi=1_000_000)
    test_bodies: int = param(25, "bodies of the held-out crops measured in metrics/correspondence.json",
                             lo=1, hi=1_000_000)
    views: int = param(6, "random cameras (crops) per body", lo=1, hi=1000)
    crop: int = param(112, "side of the rendered crops, the network's input size (a multiple of 8)", lo=16, hi=1024)
    width: int = param(16, "channels of the network's first level (the others 2, 4, 6 times as many)", lo=4, hi=512)
    steps: int = param(400, "optimiser steps", lo=1, hi=100_000_000)
    batch_size: int = param(16, "crops per step, summed over processes", lo=1, hi=100_000)
    lr: float = param(0.003, "initial Adam learning rate (cosine decay to 0)", lo=1e-9, hi=10.0)
    seed: int = param(0, "seed of the initial weights, batch order and augmentation", lo=0, hi=2**31 - 1)
    test_instances: int = param(300, "held-out crops measured (0: all)", lo=0, hi=100_000_000)
    checkpoint_every: int = param(100, "steps between checkpoints (and at the end)", lo=1, hi=10_000_000)
    log_every: int = param(20, "steps between logged curve points", lo=1, hi=10_000_000)
    resume: bool = param(False, "continue from the checkpoint at the output path when it matches")


@dataclass(frozen=True)
class NetworkSourceParams:
    """Stage ``densepose``, ``densepose.source: network``: where the images the network reads come from."""

    images: str = path_param("folder of images with boxes_json; empty: the synthetic section's bodies rendered as "
                        "images (their exact ground truth kept)")
    boxes_json: str = path_param("with images: JSON of each image's person boxes ({\"images\": [{\"file_name\", "
                            "\"boxes\", \"scores\"}]}, precomputed.boxes_json's format)")
    score_threshold: float = param(0.0, "keep boxes with at least this score", lo=0.0, hi=1.0)
    max_instances: int = param(0, "keep at most this many best-scoring boxes per image (0: all)", lo=0, hi=1000)
    batch_size: int = param(64, "boxes per forward pass", lo=1, hi=100_000)
    test_list: str = path_param("with images: file of image names (one a line) that form the test split; empty: "
                           "all train")


@dataclass(frozen=True)
class IuvParams:
    """Stage ``iuv``: repair DensePose output into clean IUV images."""

    fill_missing: bool = param(True, "repair missing labels and U/V inside the person (else drop those pixels)")
    fill_holes: bool = param(True, "fill holes of the foreground mask")
    max_hole_area: int = param(16, "fill holes up to this many pixels (larger gaps are real background); 0: all",
                               lo=0, hi=1_000_000)
    min_component_area: int = param(10, "drop foreground components smaller than this (pixels; 0 keeps all)",
                                    lo=0, hi=1_000_000)
    smooth_sigma: float = param(0.0, "Gaussian sigma (pixels) smoothing U/V within each part; 0 is off",
                                lo=0.0, hi=20.0)
    inpaint: str = param("telea", "OpenCV inpainting of U/V", choices=("telea", "ns"))
    inpaint_radius: float = param(3.0, "inpainting neighbourhood radius (pixels)", lo=1.0, hi=20.0)
    min_foreground: int = param(100, "drop instances left with fewer foreground pixels", lo=0, hi=1_000_000)
    previews: int = param(8, "instances shown in the preview PNG (raw, repaired, ground truth)", lo=0, hi=64)


@dataclass(frozen=True)
class DenseposeParams:
    """Stage ``densepose``: where the DensePose output comes from, and its crop grid."""

    source: str = param("synthetic", "synthetic (rendered Anny bodies), detectron2 (run a model on images), "
                        "precomputed (import results) or network (the correspondence network of stage network on "
                        "images)", choices=("synthetic", "detectron2", "precomputed", "network"))
    crop: int = param(112, "side S of the S x S crop grid every instance is resampled to (pixels)", lo=8, hi=1024)
    kind: str = param("chart", "the dense correspondence later stages use: chart (IUV: part and U, V; keypoints "
                      "through a lookup table) or cse (continuous surface embeddings; nearest vertex embedding)",
                      choices=("chart", "cse"))


def _check_ranges(section: str, obj: Any, names: tuple[str, ...]) -> None:
    """Raises ParamsError when a ``<name>_min`` exceeds its ``<name>_max``."""
    for name in names:
        lo, hi = getattr(obj, f"{name}_min"), getattr(obj, f"{name}_max")
        if lo > hi:
            raise ParamsError(f"params: {section}.{name}_min = {lo!r} > {section}.{name}_max = {hi!r}: "
                              f"a range needs min <= max")


@dataclass(frozen=True)
class CorruptionParams:
    """``synthetic.corruption``: DensePose-like errors applied to the exact rendering (all 0: exact)."""

    uv_noise: float = param(0.11, "std of Gaussian noise added to U and V", lo=0.0, hi=1.0)
    uv_noise_scale: float = param(0.05, "U/V noise smoothness: Gaussian blur sigma as a fraction of S (0: per pixel)",
                                  lo=0.0, hi=1.0)
    embedding_noise: float = param(0.02, "std of Gaussian noise added to each CSE embedding channel", lo=0.0, hi=1.0)
    flip_prob: float = param(0.3, "probability that a pixel on a part border takes its neighbour's part",
                             lo=0.0, hi=1.0)
    dropout_blobs: float = param(1.0, "mean number (Poisson) of NaN blobs per instance", lo=0.0, hi=100.0)
    dropout_radius: float = param(0.05, "largest blob radius, as a fraction of S", lo=0.0, hi=1.0)
    border_px: int = param(1, "silhouette eroded or dilated by up to this many pixels", lo=0, hi=32)
    occluder_prob: float = param(0.3, "probability that an instance gets an occluder pasted over it", lo=0.0, hi=1.0)
    occluder_size: float = param(0.35, "largest occluder extent, as a fraction of S", lo=0.0, hi=2.0)
    occluder_soft: float = param(1.5, "Gaussian sigma (pixels) of the occluder's soft alpha edge", lo=0.0, hi=20.0)
    occluder_missing: float = param(0.5, "probability that an occluder's pixels become missing "
                                    "(else background)", lo=0.0, hi=1.0)
    seam_px: int = param(3, "front/back seam of a segment moved by up to this many pixels", lo=0, hi=32)
    mirror_prob: float = param(0.37, "probability that a segment gets a patch of its left/right twin's labels",
                               lo=0.0, hi=1.0)


@dataclass(frozen=True)
class SyntheticParams:
    """Stage ``densepose``, ``densepose.source: synthetic``: posed Anny bodies rendered with exact correspondence."""

    train_bodies: int = param(500, "bodies in the train split", lo=1, hi=1_000_000)
    test_bodies: int = param(100, "bodies in the test split (no body is in both)", lo=1, hi=1_000_000)
    views: int = param(6, "random cameras (instances) per body", lo=1, hi=1000)
    gender_min: float = param(0.0, "Anny phenotype gender range (0 female .. 1 male)", lo=0.0, hi=1.0)
    gender_max: float = param(1.0, "see gender_min", lo=0.0, hi=1.0)
    age_min: float = param(0.5, "Anny phenotype age range (0 newborn .. 1 old; ~0.5 young adult)", lo=0.0, hi=1.0)
    age_max: float = param(1.0, "see age_min", lo=0.0, hi=1.0)
    muscle_min: float = param(0.0, "Anny phenotype muscle range", lo=0.0, hi=1.0)
    muscle_max: float = param(1.0, "see muscle_min", lo=0.0, hi=1.0)
    weight_min: float = param(0.0, "Anny phenotype weight range", lo=0.0, hi=1.0)
    weight_max: float = param(1.0, "see weight_min", lo=0.0, hi=1.0)
    height_min: float = param(0.0, "Anny phenotype height range", lo=0.0, hi=1.0)
    height_max: float = param(1.0, "see height_min", lo=0.0, hi=1.0)
    proportions_min: float = param(0.0, "Anny phenotype proportions range", lo=0.0, hi=1.0)
    proportions_max: float = param(1.0, "see proportions_min", lo=0.0, hi=1.0)
    walk: float = param(1.0, "relative frequency of walking poses", lo=0.0, hi=1000.0)
    reach: float = param(1.0, "relative frequency of reaching poses", lo=0.0, hi=1000.0)
    sit: float = param(1.0, "relative frequency of sitting poses", lo=0.0, hi=1000.0)
    bend: float = param(1.0, "relative frequency of bending poses", lo=0.0, hi=1000.0)
    pose_amount: float = param(1.0, "scale of each pose mode's configuration (0: rest pose)", lo=0.0, hi=2.0)
    pose_noise: float = param(0.08, "std of per-angle noise, as a fraction of each joint's range", lo=0.0, hi=1.0)
    elevation_min: float = param(-15.0, "camera elevation range (degrees; + looks down)", lo=-89.0, hi=89.0)
    elevation_max: float = param(35.0, "see elevation_min", lo=-89.0, hi=89.0)
    roll_min: float = param(-10.0, "camera roll range (degrees)", lo=-180.0, hi=180.0)
    roll_max: float = param(10.0, "see roll_min", lo=-180.0, hi=180.0)
    distance_min: float = param(3.0, "camera distance range (metres)", lo=0.5, hi=1000.0)
    distance_max: float = param(5.0, "see distance_min", lo=0.5, hi=1000.0)
    projection: str = param("orthographic", "camera model", choices=("orthographic", "perspective"))
    fov: float = param(40.0, "vertical field of view of the virtual image (degrees)", lo=1.0, hi=150.0)
    image_size: int = param(160, "side of the virtual image (pixels) that boxes are given in", lo=16, hi=100_000)
    cse: bool = param(False, "also render CSE embeddings (16 channels a pixel; needed by densepose.kind: cse)")
    images: bool = param(False, "also render photo-like RGB crops (clothed, shaded bodies on procedural backgrounds) "
                         "and the occluder masks, for training a correspondence network")
    ambient_min: float = param(0.25, "images: range of the ambient share of the lighting (rest: one directional "
                               "light)", lo=0.0, hi=1.0)
    ambient_max: float = param(0.65, "see ambient_min", lo=0.0, hi=1.0)
    crowd_prob: float = param(0.0, "probability that another person stands beside an instance (in front of or "
                              "behind it, on the same floor)", lo=0.0, hi=1.0)
    image_noise: float = param(0.01, "images: std of the Gaussian sensor noise (linear RGB, 0..1)", lo=0.0, hi=0.5)
    margin: float = param(0.1, "crop box = the body's box grown by this fraction of its size per side",
                          lo=0.0, hi=2.0)
    visibility_tol: float = param(0.01, "metres: a vertex is visible iff its ray to the camera, started this "
                                  "far off the surface, hits nothing", lo=0.0, hi=1.0)
    batch: int = param(32, "bodies posed and rendered together (speed only: outputs do not depend on it)",
                       lo=1, hi=100_000)
    corruption: CorruptionParams = field(default_factory=CorruptionParams)

    def __post_init__(self):
        _check_ranges("synthetic", self, ("gender", "age", "muscle", "weight", "height", "proportions",
                                          "elevation", "roll", "distance", "ambient"))
        if self.walk + self.reach + self.sit + self.bend <= 0:
            raise ParamsError("params: synthetic.walk + reach + sit + bend must be > 0 (relative pose mode frequencies)")


@dataclass(frozen=True)
class KeypointsParams:
    """Stage ``keypoints``: dense correspondence to template-vertex keypoints."""

    min_visible_area: float = param(0.1, "drop instances showing less of the template's surface area (share)",
                                    lo=0.0, hi=1.0)
    max_inconsistency: float = param(0.0, "drop keypoints farther than this many crop pixels from the median of "
                                     "their mesh neighbours' (0: keep all)", lo=0.0, hi=1000.0)
    confidence_sigma: float = param(4.0, "σ of the keypoint confidence's agreement term exp(-(d/σ)²), d the crop-pixel "
                                    "distance to the median of the mesh neighbours' keypoints (0: term off)",
                                    lo=0.0, hi=1000.0)


@dataclass(frozen=True)
class ModelParams:
    """Stage ``train``: the lifting model (METHOD.md §5)."""

    type: str = param("dp3d", "dp3d (LBO parts + skinning), no_parts (LBO shape basis) or c3dpo (free basis)",
                      choices=("dp3d", "no_parts", "c3dpo"))
    parts: int = param(10, "number M of latent parts (dp3d)", lo=1, hi=64)
    lbo_basis: int = param(32, "number K of LBO eigenvectors used (<= lbo.k)", lo=1, hi=4096)
    segmentation_init: str = param("spectral", "initial parts: spectral (k-means of the template's eigenvectors) "
                                   "or random (decaying Xavier rows, constant row 0)", choices=("spectral", "random"))
    init_sharpness: float = param(3.0, "spectral init: median gap between a vertex's two best part logits",
                                  lo=1e-3, hi=1e3)
    sigma_init: float = param(32.0, "random init, σ̄: std of segmentation logits row k is Xavier * σ̄ / (1 + k)",
                              lo=1e-3, hi=1e6)
    basis_size: int = param(10, "number Q of shape-basis coefficients (no_parts, c3dpo)", lo=1, hi=256)
    hidden: int = param(256, "trunk width U (C3DPO and full-size runs: 1024)", lo=8, hi=16384)
    bottleneck: int = param(128, "residual block bottleneck width (C3DPO: 256)", lo=4, hi=16384)
    blocks: int = param(2, "residual blocks of the trunk (C3DPO: 6)", lo=0, hi=64)
    heteroscedastic: bool = param(False, "predict a per-keypoint scale b and use the heteroscedastic loss")
    blendshapes: int = param(0, "number of LBO blendshapes applied before posing (dp3d; paper dogs: 5)",
                             lo=0, hi=64)


@dataclass(frozen=True)
class LossParams:
    """Stage ``train``: loss weights (eq. 9) and robust-norm constants; a weight of 0 skips that loss."""

    canonicalisation: float = param(0.1, "w_canon", lo=0.0, hi=1e6)
    arap: float = param(1.0, "w_arap (relative ARAP energy: the rest shape's energy is 1; paper 0.3)", lo=0.0, hi=1e6)
    entropy: float = param(0.01, "w_entropy (mean vertex entropy in units of log M: 0 hard .. 1 uniform; paper 0.001)",
                           lo=0.0, hi=1e6)
    facing: float = param(1.0, "w_facing: visible vertices' predicted normals must face the camera (not in the paper)",
                          lo=0.0, hi=1e6)
    facing_gate: float = param(0.0, "> 0: the facing loss counts a keypoint's evidence by exp(-r²/g²), r its "
                               "current re-projection residual (normalised units): a keypoint the model does not "
                               "explain (a mirror patch, a hidden vertex named) does not say which way its part faces; "
                               "0: every visible keypoint counts", lo=0.0, hi=1e3)
    self_visibility: float = param(0.0, "> 0: from this share of the steps on, a keypoint whose vertex faces away "
                                   "from the camera in the model's current prediction (its mesh normal, detached) "
                                   "weighs 0 in the re-projection and facing terms: the model's own depth finds the "
                                   "pixels that name a hidden vertex (dp3d); 0: off", lo=0.0, hi=1.0)
    self_visibility_z: float = param(0.0, "loss.self_visibility: a vertex counts as turned away when its normal's z "
                                     "(away from the camera) exceeds this (0: any turn; 0.3: a clear one)",
                                     lo=-1.0, hi=1.0)
    canon_samples: int = param(1, "random rotations drawn per instance for the canonicalisation loss", lo=1, hi=64)
    oracle_3d: float = param(0.0, "diagnostic: weight of a 3D loss on synthetic ground truth (an upper bound; "
                             "0 is off)", lo=0.0, hi=1e6)
    huber_eps: float = param(0.01, "ε of the pseudo-Huber norm (normalised keypoint units)", lo=1e-9, hi=1e3)
    robust: str = param("pseudo_huber", "robust norm of the re-projection residual: pseudo_huber (convex, grows like "
                        "|r|), geman_mcclure (bounded: a gross outlier costs at most c/2) or cauchy (grows like log |r|)",
                        choices=("pseudo_huber", "geman_mcclure", "cauchy"))
    robust_scale: float = param(0.0, "scale c of the re-projection norm (normalised keypoint units; 0: huber_eps)",
                                lo=0.0, hi=1e3)
    robust_scale_start: float = param(0.0, "c at the first step, shrinking geometrically to robust_scale over the "
                                      "first robust_anneal of the steps (0: no annealing)", lo=0.0, hi=1e3)
    robust_anneal: float = param(0.5, "share of the steps over which c anneals", lo=0.0, hi=1.0)
    mirror: bool = param(False, "mirror-aware re-projection: a keypoint may be explained by its vertex or by that "
                         "vertex's left/right mirror, the better of the two taken softly")
    mirror_parts: str = param("all", "the vertices whose mirror may explain a keypoint: all, or limbs (arms, hands, "
                              "legs, feet; torso and head keep their own vertex, so a body mirrored whole, which "
                              "faces the other way, costs what it should)", choices=("all", "limbs"))
    b_min: float = param(0.1, "heteroscedastic loss: smallest scale b dividing the residual", lo=1e-9, hi=1e3)
    arap_instances: int = param(64, "ARAP on this many instances of each batch (a random subset; 0: all)",
                                lo=0, hi=1_000_000)
    arap_rotations: str = param("horn", "best per-vertex rotations: horn (batched quaternion) or svd",
                                choices=("horn", "svd"))
    confidence: bool = param(False, "weigh each keypoint's re-projection term by its confidence (keypoints.zarr's "
                             "confidence; false: every visible keypoint weighs 1)")


@dataclass(frozen=True)
class TrainParams:
    """Stage ``train``: optimiser and schedule (supp. A)."""

    optimizer: str = param("adamw", "adamw (decoupled decay), adam (L2 in the gradient) or sgd (the paper's)",
                           choices=("adamw", "adam", "sgd"))
    part_lr: float = param(0.01, "learning rate of the part logits A and rest transforms (dp3d)", lo=0.0, hi=10.0)
    seed: int = param(0, "seed of the model's initialisation and the batch order (the data keep common.seed)",
                      lo=0, hi=2**31 - 1)
    inplane_augment: bool = param(False, "rotate each batch's keypoints by random in-plane angles (C3DPO)")
    val_share: float = param(0.0, "share of the train bodies held out of training (eval.split val measures them)",
                             lo=0.0, hi=0.9)
    lr: float = param(0.001, "initial learning rate (paper, sgd: 0.003)", lo=1e-9, hi=10.0)
    momentum: float = param(0.99, "sgd momentum (paper: 0.99)", lo=0.0, hi=0.99999)
    weight_decay: float = param(0.001, "weight decay of the networks' weights (never of A, rest transforms, bases)",
                                lo=0.0, hi=1.0)
    lr_decay_at: float = param(0.8, "share of the epochs after which the lr is divided", lo=0.0, hi=1.0)
    lr_decay: float = param(0.1, "factor applied to the lr then", lo=0.0, hi=1.0)
    epochs: int = param(80, "passes over the train split", lo=1, hi=100_000)
    batch_size: int = param(256, "instances per step, summed over processes (paper: 512)", lo=2, hi=1_000_000)
    chunks_in_memory: int = param(8, "Zarr chunks read and shuffled together (bounds memory)", lo=1, hi=100_000)
    checkpoint_every: int = param(100, "steps between checkpoints (and at the end)", lo=1, hi=10_000_000)
    log_every: int = param(10, "steps between logged curve points", lo=1, hi=10_000_000)
    explode_factor: float = param(1000.0, "stop when a loss exceeds this multiple of the first step's loss",
                                  lo=1.0, hi=1e30)
    resume: bool = param(False, "continue from the checkpoint at the output path when it matches")
    rounds: int = param(1, "1, or 2: train again without the keypoints round 1's model turns away (METHOD.md §5.7)",
                        lo=1, hi=2)
    turned_z: float = param(0.3, "rounds 2: a keypoint is turned away when its vertex's normal z in round 1's "
                            "reconstruction exceeds this (-1..1; z points away from the camera)", lo=-1.0, hi=1.0)


@dataclass(frozen=True)
class EvalParams:
    """Stage ``evaluate``: metrics on the test split and the reports."""

    batch_size: int = param(512, "test instances reconstructed together", lo=1, hi=1_000_000)
    split: str = param("test", "instances measured: test, or val (the train bodies held out by train.val_share)",
                       choices=("test", "val"))
    parts: str = param("fine", "per-part errors over the 24 DensePose parts (fine) or the 14 coarse ones",
                       choices=("fine", "coarse"))
    s2s_instances: int = param(100, "S2S error on the first this many test instances (0: off; ~0.2 s each on CPU)",
                               lo=0, hi=100_000_000)
    grid: int = param(6, "test instances drawn in reports/grid.png", lo=0, hi=64)
    meshes: int = param(4, "first reconstructions written as PLY meshes (with their ground truth)", lo=0, hi=1000)
    uv_maps: int = param(4, "first reconstructions written as UV position maps", lo=0, hi=1000)
    uv_resolution: int = param(64, "texels per chart side of the UV position maps", lo=4, hi=1024)
    histogram_max_mm: float = param(400.0, "upper end of the error histograms (mm)", lo=1.0, hi=1e6)
    refine_steps: int = param(100, "test-time refinement: Adam steps on each instance's part motions and camera from "
                              "the network's prediction (0: the network's prediction alone, the paper's)",
                              lo=0, hi=100_000)
    refine_lr: float = param(0.01, "test-time refinement: Adam learning rate", lo=1e-9, hi=10.0)
    refine_anchor: float = param(0.03, "test-time refinement: weight of the squared distance of the part motions "
                                 "from the network's prediction (the prior that keeps them in its shape space)",
                                 lo=0.0, hi=1e6)


@dataclass(frozen=True)
class Params:
    """All of ``params.yaml``."""

    common: CommonParams = field(default_factory=CommonParams)
    cluster: ClusterParams = field(default_factory=ClusterParams)
    template: TemplateParams = field(default_factory=TemplateParams)
    lbo: LboParams = field(default_factory=LboParams)
    densepose: DenseposeParams = field(default_factory=DenseposeParams)
    synthetic: SyntheticParams = field(default_factory=SyntheticParams)
    detectron2: Detectron2Params = field(default_factory=Detectron2Params)
    precomputed: PrecomputedParams = field(default_factory=PrecomputedParams)
    network: NetworkParams = field(default_factory=NetworkParams)
    network_source: NetworkSourceParams = field(default_factory=NetworkSourceParams)
    iuv: IuvParams = field(default_factory=IuvParams)
    keypoints: KeypointsParams = field(default_factory=KeypointsParams)
    model: ModelParams = field(default_factory=ModelParams)
    loss: LossParams = field(default_factory=LossParams)
    train: TrainParams = field(default_factory=TrainParams)
    eval: EvalParams = field(default_factory=EvalParams)

    def __post_init__(self):
        _raise_all([m for check in CROSS_SECTION if (m := check(self))])


def _lbo_basis_within_lbo_k(p: Params) -> str | None:
    if p.model.lbo_basis > p.lbo.k:
        return (f"model.lbo_basis = {p.model.lbo_basis} > lbo.k = {p.lbo.k}: the model uses the first "
                f"model.lbo_basis of the lbo.k eigenvectors that the lbo stage computes; lower model.lbo_basis "
                f"to <= {p.lbo.k} or raise lbo.k to >= {p.model.lbo_basis}")
    return None


def _parts_within_basis(p: Params) -> str | None:
    m, k = p.model, min(p.model.lbo_basis, p.lbo.k)
    if m.type == "dp3d" and m.segmentation_init == "spectral" and m.parts > k:
        return (f"model.parts = {m.parts} > the {k} eigenvectors the model uses (model.lbo_basis = {m.lbo_basis}, "
                f"lbo.k = {p.lbo.k}): the spectral part init (model.segmentation_init: spectral) clusters the "
                f"template on the first model.parts - 1 = {m.parts - 1} non-constant eigenvectors; lower "
                f"model.parts to <= {k}, raise model.lbo_basis and lbo.k to >= {m.parts}, or set "
                f"model.segmentation_init: random")
    return None


def has_truth(p: Params) -> bool:
    """Whether the densepose store will hold synthetic ground truth (``gt/``): the synthetic source, or the
    network source on the synthetic images."""
    return p.densepose.source == "synthetic" or (p.densepose.source == "network" and not p.network_source.images)


def _cse_kind_has_cse_data(p: Params) -> str | None:
    if p.densepose.kind != "cse":
        return None
    if p.densepose.source == "network":
        return ("densepose.kind = 'cse' needs CSE embeddings, but densepose.source: network predicts charts (IUV); "
                "set densepose.kind: chart")
    if p.densepose.source == "synthetic" and not p.synthetic.cse:
        return ("densepose.kind = 'cse' needs CSE embeddings, but densepose.source: synthetic renders them only "
                "with synthetic.cse: true; set synthetic.cse: true or densepose.kind: chart")
    if p.densepose.source == "precomputed" and p.precomputed.format == "iuv_png":
        return ("densepose.kind = 'cse' needs CSE embeddings, but precomputed.format: iuv_png holds chart IUV "
                "only; set densepose.kind: chart, or import a CSE dump (precomputed.format: dump)")
    return None


def _oracle_has_truth(p: Params) -> str | None:
    if p.loss.oracle_3d <= 0:
        return None
    if not has_truth(p):
        return (f"loss.oracle_3d = {p.loss.oracle_3d} needs synthetic ground truth, but densepose.source = "
                f"{p.densepose.source!r}" + (" reads network_source.images" if p.densepose.source == "network" else "")
                + "; set loss.oracle_3d: 0 or densepose.source: synthetic")
    if p.synthetic.projection != "orthographic":
        return (f"loss.oracle_3d = {p.loss.oracle_3d} needs orthographic synthetic data, but synthetic.projection "
                f"= {p.synthetic.projection!r}; set loss.oracle_3d: 0 or synthetic.projection: orthographic")
    return None


def _val_split_has_holdout(p: Params) -> str | None:
    if p.eval.split == "val" and p.train.val_share <= 0:
        return ("eval.split = 'val' measures the train bodies held out by train.val_share, which is 0; set "
                "train.val_share (e.g. 0.1) or eval.split: test")
    return None


def _network_crop_divisible_by_8(p: Params) -> str | None:
    if p.network.crop % 8:
        return (f"network.crop = {p.network.crop}: the network halves its input three times; use a multiple of 8 "
                f"(e.g. {8 * round(p.network.crop / 8) or 8})")
    return None


def _network_images_have_boxes(p: Params) -> str | None:
    if p.densepose.source == "network" and bool(p.network_source.images) != bool(p.network_source.boxes_json):
        return ("densepose.source: network reads a folder of images with their person boxes: set both "
                "network_source.images and network_source.boxes_json, or neither (the synthetic images)")
    return None


# the constraints between keys checked by Params: each returns the problem (naming both keys and the
# fix) or None
CROSS_SECTION = (_lbo_basis_within_lbo_k, _parts_within_basis, _cse_kind_has_cse_data, _oracle_has_truth,
                 _val_split_has_holdout, _network_images_have_boxes, _network_crop_divisible_by_8)


def _raise_all(problems: list[str]) -> None:
    """Raises one ParamsError listing every problem (each without the leading 'params: '); none: returns."""
    problems = [m.removeprefix("params: ") for m in problems]
    if len(problems) == 1:
        raise ParamsError(f"params: {problems[0]}")
    if problems:
        raise ParamsError(f"params: {len(problems)} problems:\n" + "\n".join(f"  - {m}" for m in problems))


def _show(value: Any) -> str:
    """A value as an error shows it: its repr, cut to 80 characters (huge integers by their size)."""
    try:
        text = repr(value)
    except ValueError:  # an integer beyond Python's digit limit
        text = f"<an integer of {value.bit_length()} bits>"
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(meta: dict, typ: type) -> str:
    """Human text for what a field accepts, e.g. 'an integer in [1, 256]'."""
    if meta.get("choices"):
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    name = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[typ]
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and hi is not None:
        return f"{name} in [{lo}, {hi}]"
    if lo is not None:
        return f"{name} >= {lo}"
    if hi is not None:
        return f"{name} <= {hi}"
    return name


def _is_a(value: Any, typ: type) -> bool:
    """Whether ``value`` has the YAML type of a field of type ``typ`` (an int is a float; a bool is neither)."""
    if typ is bool:
        return isinstance(value, bool)
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if typ is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, typ)


def _check_value(key: str, value: Any, typ: type, meta: dict) -> Any:
    """The value of field ``key`` of type ``typ`` (a float as float); raises ParamsError naming the key."""
    allowed = _describe(meta, typ)
    if not _is_a(value, typ):
        raise ParamsError(f"params: {key} = {_show(value)} has the wrong type: allowed {allowed}")
    if typ is float:
        shown = _show(value)
        try:
            value = float(value)
        except OverflowError:  # an integer beyond the float range
            raise ParamsError(f"params: {key} = {shown} is out of range: allowed {allowed}") from None
        if not math.isfinite(value):
            raise ParamsError(f"params: {key} = {shown} is not a finite number: allowed {allowed}")
    if meta.get("choices") and value not in meta["choices"]:
        raise ParamsError(f"params: {key} = {_show(value)} is not allowed: allowed {allowed}")
    if meta.get("path") and value == UNSET_PATH:
        value = ""
    lo, hi = meta.get("lo"), meta.get("hi")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ParamsError(f"params: {key} = {_show(value)} is out of range: allowed {allowed}")
    return value


def _build(cls: type, raw: Any, prefix: str, problems: list[str]) -> Any:
    """Builds dataclass ``cls`` from a mapping, checking every key recursively.

    Appends one line per problem to ``problems`` and returns None when this section has any.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(f"{prefix or 'the file'} must be a mapping, got {type(raw).__name__}")
        return None
    before = len(problems)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    where = f"section '{prefix}'" if prefix else "the top level"
    for name in sorted((k for k in raw if k not in fields), key=_show):
        shown = name if isinstance(name, str) and len(name) <= 80 else _show(name)
        problems.append(f"unknown key {prefix + '.' if prefix else ''}{shown} in {where}; "
                        f"known keys: {', '.join(fields)}")
    kwargs = {}
    for name, value in raw.items():
        if name not in fields:
            continue
        key = f"{prefix}.{name}" if prefix else name
        typ = hints[name]
        if isinstance(typ, types.UnionType):
            raise TypeError(f"{cls.__name__}.{name}: union types are not supported")
        if dataclasses.is_dataclass(typ):
            kwargs[name] = _build(typ, value, key, problems)
            continue
        try:
            kwargs[name] = _check_value(key, value, typ, dict(fields[name].metadata))
        except ParamsError as e:
            problems.append(str(e).removeprefix("params: "))
    if len(problems) > before:
        return None
    try:
        return cls(**kwargs)
    except ParamsError as e:  # a constraint between its keys (__post_init__)
        problems.append(str(e).removeprefix("params: "))
        return None


def load_params_dict(raw: dict | None) -> Params:
    """Validates a parsed ``params.yaml`` mapping; missing keys take their defaults.

    Raises:
        ParamsError: listing every unknown, mistyped or out-of-range key, or else every violated
            constraint between keys (:data:`CROSS_SECTION`).
    """
    problems: list[str] = []
    params = _build(Params, raw, "", problems)
    _raise_all(problems)
    return params


def _duplicate_keys(node: yaml.Node | None, where: str = "") -> list[str]:
    """Every key given twice in one mapping of a composed YAML document, as ``"key (lines a and b)"``,
    dotted from the top (``train.epochs``); lines 1-based."""
    found = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            dotted = f"{where}.{name}" if where else str(name)
            if name is not None and name in seen:
                found.append(f"{dotted} (lines {seen[name] + 1} and {key.start_mark.line + 1})")
            elif name is not None:
                seen[name] = key.start_mark.line
            found += _duplicate_keys(value, dotted)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            found += _duplicate_keys(value, f"{where}[{i}]")
    return found


def load_params(path: str | Path = "params.yaml") -> Params:
    """Reads and validates ``params.yaml``.

    Raises:
        FileNotFoundError: the file is missing (names it).
        ParamsError: the YAML is invalid; or keys are unknown, mistyped or out of range, or break a
            constraint between keys (every problem listed, each naming its keys).
        InputError: a key given twice in one mapping (YAML would keep the last silently; DVC refuses the
            file), naming each such key and both its lines.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        twice = _duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader))
        raw = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError) as e:  # ValueError: not UTF-8, or a date like 2001-13-45
        raise ParamsError(f"params: {path} is not valid YAML: {e}") from e
    if twice:
        raise InputError(f"{path}: key{'s' if len(twice) > 1 else ''} given twice: {'; '.join(twice)}; "
                         "keep one of each (YAML would silently take the last, DVC refuses the file)")
    try:
        return load_params_dict(raw)
    except ParamsError as e:
        raise ParamsError(f"{path}: {e}") from None


def as_dict(obj: Any) -> dict:
    """A params dataclass as a plain dict (for store attributes and checkpoints)."""
    return dataclasses.asdict(obj)
