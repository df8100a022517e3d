"""The ``detectron2`` source: a DensePose R-CNN run on a folder of images.

Detectron2 and its DensePose project are optional dependencies, imported only inside
:func:`build_predictor`; when they are missing the stage stops with :class:`Detectron2MissingError`
(how to install them, which other ``densepose.source`` values exist) -- it never falls back to
another source.

Flow (:func:`write_detectron2_store`): first :func:`check_detectron2_inputs` fails fast, reporting
in one error every problem it finds (Detectron2 not importable, config or weights missing or
unreadable, no image in the folder, an unreadable test list, ``cuda`` without CUDA); then list the
images of ``detectron2.images`` (sorted, top level only), read them in batches of ``batch_size`` as
Detectron2's ``read_image`` reads them (:func:`pipeline.core.image_files.read_photo`: oriented by their EXIF
tag; an unreadable, corrupt or truncated file is logged, skipped and counted; a decompression bomb, more than
:data:`pipeline.core.image_files.MAX_PIXELS` pixels, is an error), run the model
under ``torch.no_grad()`` on CUDA when present (``common.device``), check each image's detections at
the door (:func:`pipeline.densepose.door.door_boxes`: non-finite boxes or scores and scores outside [0, 1]
are errors naming the image and instance, empty boxes and boxes outside the image are skipped,
boxes partly outside clipped, each counted; non-finite heatmaps are errors; the policy table is
:mod:`pipeline.densepose.door`'s), keep the detections scoring at least ``score_threshold``, best first, at
most ``max_instances`` per image (0: all), and resample each kept instance's 112x112 heatmaps onto
the ``S x S`` crop of its box exactly as Detectron2's converters do
(:mod:`pipeline.densepose.convert`; a clipped box's crop covers the clipped box). Chart models give
``labels``/``uv``; CSE models give ``embedding``/``mask``; the vertex embeddings of the template's
mesh read from the loaded model (``model.roi_heads.embedder(mesh_name)``, Detectron2's
``densepose/modeling/cse/embedder.py``; rows L2-normalised) must equal the template's
(``template.source: cse`` built from the same weights), checked before any image is read. An image
with no person gives zero instances; a run where no instance survives raises :class:`NoInstancesError`.

The model is driven batch-wise as ``DefaultPredictor`` drives it image by image: BGR ``uint8``
images (flipped to RGB when ``cfg.INPUT.FORMAT`` says so), ``ResizeShortestEdge(MIN_SIZE_TEST,
MAX_SIZE_TEST)``, ``{"image": (3, h, w) float32, "height": H, "width": W}`` inputs; output boxes are
in original image pixels. Anything with the :class:`Predictor` call signature can stand in for the
model (the tests use a fake).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import torch

from pipeline.core.errors import InputError, UserError
from pipeline.core.image_files import UnreadableImageError, read_photo
from pipeline.core.ranks import ALONE, Ranks, check_share, ordered_map, sum_counts
from pipeline.core.stage import progress, resolve_device
from pipeline.densepose.convert import chart_output_to_crops, cse_output_to_crops
from pipeline.densepose.door import (BoxVerdict, DoorCounts, check_finite, door_boxes, path_problems, raise_problems,
                                     select_instances)
from pipeline.densepose.write import (BOXES_PER_BATCH, DenseposeSummary, ImageHead, ImageInstances, ImageTask,
                                      InstancesWriter, NoInstancesError, check_cse_template, materialised,
                                      read_name_list, store_params, write_images)

log = logging.getLogger(__name__)

__all__ = ["Detectron2MissingError", "NoInstancesError", "Detections", "Predictor", "IMAGE_SUFFIXES",
           "INSTALL_HELP", "list_images", "build_predictor", "infer_folder",
           "check_detectron2_inputs", "write_detectron2_store"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

INSTALL_HELP = (
    "densepose.source 'detectron2' needs Detectron2 and its DensePose project, which are not installed "
    "(they are optional and never installed by requirements.txt). On a machine with CUDA and a matching "
    "PyTorch, install them with\n"
    "    pip install 'git+https://github.com/facebookresearch/detectron2.git'\n"
    "    pip install 'git+https://github.com/facebookresearch/detectron2.git#subdirectory=projects/DensePose'\n"
    "(see https://detectron2.readthedocs.io/en/latest/tutorials/install.html). Without Detectron2, use "
    "densepose.source 'precomputed' (import an `apply_net.py dump` file or IUV PNGs made elsewhere) or "
    "'synthetic' (rendered bodies with ground truth).")


class Detectron2MissingError(UserError, ImportError):
    """Detectron2 or its DensePose project cannot be imported; the message says how to install them."""


class Detections(NamedTuple):
    """A model's detections in one image (tensors on any device).

    boxes: (k, 4) float x0, y0, x1, y1 image pixels.  scores: (k,) float.
    chart: (fine_segm (k, 25, 112, 112), coarse_segm (k, 2, 112, 112), u, v (k, 25, 112, 112)) or None.
    cse: (embedding (k, D, 112, 112), coarse_segm (k, 2, 112, 112)) or None.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    chart: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    cse: tuple[torch.Tensor, torch.Tensor] | None = None


class Predictor(Protocol):
    """Runs the model on a batch of BGR uint8 images (H, W, 3), one :class:`Detections` each.
    ``is_cse``: a CSE model (it has vertex embeddings)."""

    is_cse: bool

    def __call__(self, images: list[np.ndarray]) -> list[Detections]: ...

    def vertex_embeddings(self, mesh_name: str) -> np.ndarray: ...


def _import_detectron2():
    try:
        import detectron2.data.transforms as T
        from densepose import add_densepose_config
        from densepose.structures import DensePoseChartPredictorOutput, DensePoseEmbeddingPredictorOutput
        from detectron2.checkpoint import DetectionCheckpointer
        from detectron2.config import get_cfg
        from detectron2.modeling import build_model
    except ImportError as e:
        raise Detectron2MissingError(f"{INSTALL_HELP}\n(import failed: {e})") from e
    return (T, add_densepose_config, DensePoseChartPredictorOutput, DensePoseEmbeddingPredictorOutput,
            DetectionCheckpointer, get_cfg, build_model)


class _Detectron2Predictor:
    """A DensePose R-CNN built from a config file and weights; see the module docstring."""

    def __init__(self, config: str, weights: str, device: str, score_threshold: float):
        (T, add_densepose_config, self._chart_cls, self._cse_cls, DetectionCheckpointer, get_cfg,
         build_model) = _import_detectron2()
        cfg = get_cfg()
        add_densepose_config(cfg)
        cfg.merge_from_file(config)
        cfg.MODEL.WEIGHTS = weights
        cfg.MODEL.DEVICE = device
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = score_threshold
        cfg.freeze()
        self.cfg = cfg
        self.model = build_model(cfg)
        self.model.eval()
        DetectionCheckpointer(self.model).load(weights)
        # DensePose's ROI heads build an embedder only for CSE models (build_densepose_embedder)
        self.is_cse = getattr(self.model.roi_heads, "embedder", None) is not None
        self.resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST)
        if cfg.INPUT.FORMAT not in ("BGR", "RGB"):
            raise InputError(f"{config}: INPUT.FORMAT {cfg.INPUT.FORMAT!r} is not supported (BGR or RGB)")
        self.rgb = cfg.INPUT.FORMAT == "RGB"

    @torch.no_grad()
    def __call__(self, images: list[np.ndarray]) -> list[Detections]:
        inputs = []
        for img in images:
            if self.rgb:
                img = img[:, :, ::-1]
            h, w = img.shape[:2]
            resized = self.resize.get_transform(img).apply_image(img)
            inputs.append({"image": torch.as_tensor(resized.astype("float32").transpose(2, 0, 1)),
                           "height": h, "width": w})
        return [self._detections(out["instances"]) for out in self.model(inputs)]

    def _detections(self, inst) -> Detections:
        boxes, scores = inst.pred_boxes.tensor, inst.scores
        if len(inst) == 0 or not inst.has("pred_densepose"):
            return Detections(boxes.reshape(0, 4), scores.reshape(0))
        dp = inst.pred_densepose
        if isinstance(dp, self._chart_cls):
            return Detections(boxes, scores, chart=(dp.fine_segm, dp.coarse_segm, dp.u, dp.v))
        if isinstance(dp, self._cse_cls):
            return Detections(boxes, scores, cse=(dp.embedding, dp.coarse_segm))
        raise TypeError(f"unsupported DensePose predictor output {type(dp).__name__}")

    def vertex_embeddings(self, mesh_name: str) -> np.ndarray:
        embedder = getattr(self.model.roi_heads, "embedder", None)
        if embedder is None:
            raise InputError("the model has no CSE embedder (roi_heads.embedder): not a CSE model")
        if not embedder.has_embeddings(mesh_name):
            raise InputError(f"CSE mesh {mesh_name!r} (template.cse_mesh): the model has embeddings for "
                             f"{sorted(embedder.mesh_names)} only")
        with torch.no_grad():
            return embedder(mesh_name).float().cpu().numpy()  # (N, D), L2-normalised by the embedder


def build_predictor(config: str, weights: str, device: str, score_threshold: float) -> Predictor:
    """Builds the DensePose R-CNN (imports Detectron2 here, and only here).

    Raises:
        Detectron2MissingError: Detectron2 / DensePose are not importable.
        FileNotFoundError: the config or weights file is missing (named).
    """
    for key, path in (("detectron2.config", config), ("detectron2.weights", weights)):
        if not path:
            raise InputError(f"{key} is empty: give a local path (see params.yaml)")
        if not Path(path).is_file():
            raise FileNotFoundError(f"{key}: file not found: {path}")
    _import_detectron2()
    log.info("building DensePose model from %s with weights %s on %s", config, weights, device)
    return _Detectron2Predictor(config, weights, device, score_threshold)


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder`` (by suffix, case-insensitive), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"detectron2.images: not a folder: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _kept(where: str, det: Detections, size: tuple[int, int], threshold: float, max_instances: int,
          counts: DoorCounts) -> tuple[np.ndarray, BoxVerdict, np.ndarray]:
    """One image's detections checked at the door (skips and clips counted in ``counts``) and filtered.

    where: the image file (for the messages).  size: its (H, W).
    Returns: keep (m,) int64 the detections kept, best first; the door's verdict; scores (k,) float32.
    """
    boxes = det.boxes.detach().float().cpu().numpy()
    scores = det.scores.detach().float().cpu().numpy()
    v = door_boxes(boxes.reshape(-1, 4) if boxes.size == 0 else boxes, scores, size, where, counts)
    return select_instances(scores, threshold, max_instances, usable=v.keep), v, scores


def _crops(where: str, name: str, det: Detections, size: tuple[int, int], crop: int, part: np.ndarray,
           v: BoxVerdict, scores: np.ndarray) -> ImageInstances:
    """Detections ``part`` ((m,) int64, kept by :func:`_kept`) of one image resampled onto the crop grid; their
    heatmaps checked finite. name: the image's name in the store."""
    idx = torch.from_numpy(part).long()
    kept_boxes, kept_scores, window = v.boxes[part], scores[part], torch.from_numpy(v.window[part])
    fix = "check detectron2.weights (a damaged or mismatched file) and detectron2.config"
    if det.cse is not None:
        e, c = (t[idx.to(t.device)] for t in det.cse)
        for t, what in ((e, "the model's embedding"), (c, "the model's coarse_segm")):
            check_finite(t, what, where, fix, part)
        out = cse_output_to_crops(e, c, crop, window=window)
        return ImageInstances(name, kept_boxes, kept_scores, embedding=out.embedding.cpu().numpy(),
                              mask=out.mask.cpu().numpy(), size=size)
    if det.chart is None:
        if len(part):
            raise InputError(f"{where}: detections without DensePose output")
        return ImageInstances(name, kept_boxes, kept_scores, labels=np.zeros((0, crop, crop), np.uint8),
                              uv=np.zeros((0, 2, crop, crop), np.float32), size=size)
    heatmaps = [t[idx.to(t.device)] for t in det.chart]
    for t, what in zip(heatmaps, ("fine_segm", "coarse_segm", "u", "v")):
        check_finite(t, f"the model's {what}", where, fix, part)
    out = chart_output_to_crops(*heatmaps, crop, window=window)
    return ImageInstances(name, kept_boxes, kept_scores, labels=out.labels.cpu().numpy(), uv=out.uv.cpu().numpy(),
                          size=size)


def _folder_task(predictor: Predictor, batches: list[list[Path]], crop: int, score_threshold: float,
                 max_instances: int, counts: DoorCounts, batch: int | None) -> ImageTask:
    """The task of image batch ``t`` (module docstring): its images read, the model run on them, each image's
    detections checked at the door and filtered; per image its :class:`~pipeline.densepose.write.ImageHead` and a
    generator of its instances resampled ``batch`` at a time (None: all in one, even none), or None when the image
    cannot be read (logged)."""
    def infer(t: int) -> list[tuple[ImageHead, Iterator[ImageInstances] | None]]:
        out, read, images = [], [], []
        for p in batches[t]:
            try:
                img = np.ascontiguousarray(read_photo(p)[..., ::-1])  # BGR, as DefaultPredictor takes it
            except UnreadableImageError as e:
                log.warning("skipping %s", e)
                out.append((ImageHead(p.name), None))
                continue
            read.append(p)
            images.append(img)
        if not images:
            return out
        dets = predictor(images)
        if len(dets) != len(images):
            raise RuntimeError(f"the predictor returned {len(dets)} results for {len(images)} images")
        for p, d, im in zip(read, dets, images):
            size = tuple(int(x) for x in im.shape[:2])
            keep, v, scores = _kept(str(p), d, size, score_threshold, max_instances, counts)
            parts = [keep] if batch is None else [keep[s:s + batch] for s in range(0, len(keep), batch)]
            out.append((ImageHead(p.name, size, len(scores)), _image_batches(str(p), p.name, d, size, crop, parts, v,
                                                                             scores)))
        return out

    return infer


def _image_batches(where: str, name: str, det: Detections, size: tuple[int, int], crop: int,
                   parts: list[np.ndarray], v: BoxVerdict, scores: np.ndarray) -> Iterator[ImageInstances]:
    """:func:`_crops` of each of ``parts``, one at a time."""
    for part in parts:
        yield _crops(where, name, det, size, crop, part, v, scores)


def _batches(folder: str | Path, batch_size: int, ranks: Ranks) -> list[list[Path]]:
    """The images of ``folder`` in batches of ``batch_size`` (one model call each, one task under torchrun)."""
    paths = list_images(folder)
    if not paths:
        raise FileNotFoundError(f"detectron2.images: no image ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    check_share(-(-len(paths) // batch_size), ranks,
                f"batches of detectron2.batch_size = {batch_size} images ({len(paths)} images)",
                "lower detectron2.batch_size or the processes")
    return [paths[s:s + batch_size] for s in range(0, len(paths), batch_size)]


def infer_folder(predictor: Predictor, folder: str | Path, crop: int, batch_size: int = 4,
                 score_threshold: float = 0.8, max_instances: int = 0,
                 counts: DoorCounts | None = None, ranks: Ranks = ALONE) -> tuple[list[ImageInstances], list[str]]:
    """Runs ``predictor`` on every image of ``folder`` and keeps every result (to look at them; the stage writes
    them as they come, :func:`write_detectron2_store`); see the module docstring.

    Args:
        counts: where boxes skipped or clipped at the door are counted (default: a new, discarded one); under
            torchrun the sums over the ranks.
        ranks: under torchrun, batch ``t`` of ``batch_size`` images runs on rank ``t mod P``
            (:func:`pipeline.core.ranks.ordered_map`); rank 0 gets every result, the others nothing.
    Returns:
        one :class:`ImageInstances` per readable image (names relative to ``folder``), and the names
        of the images that could not be read.
    """
    counts = counts if counts is not None else DoorCounts()
    batches = _batches(folder, batch_size, ranks)
    task = materialised(_folder_task(predictor, batches, crop, score_threshold, max_instances, counts, batch=None))
    results, skipped = [], []
    for _, images in ordered_map(task, len(batches), ranks):
        for head, instances in images:
            if instances is None:
                skipped.append(head.name)
            else:
                results += instances
    counts.counts = sum_counts(counts.counts, ranks)
    return results, skipped


def check_detectron2_inputs(params, device: str | None = None) -> None:
    """Fails fast, before any model is built or image read: Detectron2 importable, ``params``
    (:class:`pipeline.core.config.Detectron2Params`) naming a readable config, weights and a folder with
    images (and test list), ``device`` (``common.device``) usable.

    Raises:
        Detectron2MissingError: Detectron2 is not importable (the message lists every other problem too).
        InputError: every problem found, in one message.
    """
    problems, error = [], InputError
    try:
        _import_detectron2()
    except Detectron2MissingError as e:
        problems.append(str(e))
        error = Detectron2MissingError
    problems += path_problems("detectron2.config", params.config, hint="a DensePose config file (.yaml)")
    problems += path_problems("detectron2.weights", params.weights, hint="the model's weights file, a local path")
    folder = path_problems("detectron2.images", params.images, "folder", hint="a folder of images")
    if not folder and not list_images(params.images):
        folder = [f"detectron2.images: no image ({', '.join(IMAGE_SUFFIXES)}) in {params.images}"]
    problems += folder
    if params.test_list:
        problems += path_problems("detectron2.test_list", params.test_list)
    if device is not None:
        try:
            resolve_device(device)
        except InputError as e:
            problems.append(str(e))
    raise_problems("densepose.source detectron2", problems, error)


def write_detectron2_store(params, crop: int, device: str, template, out_path: str | Path,
                           params_record: dict | None = None, ranks: Ranks = ALONE) -> DenseposeSummary:
    """The ``detectron2`` source, end to end: build the model, run it, write ``densepose.zarr``.

    Args:
        params: :class:`pipeline.core.config.Detectron2Params`.  crop: S (``densepose.crop``).
        device: ``common.device`` (auto, cpu or cuda).  template: :class:`pipeline.template.file.Template`
            (its hash is recorded; a CSE model's vertex embeddings must be its own).
        params_record: params recorded in the store's attributes.
        ranks: under torchrun, this process's share of the images (:func:`infer_folder`); rank 0 writes.

    Returns:
        (on rank 0; the other ranks end once their share is done) summary dict: images, images_skipped, images_without_instances, instances, instances_train,
        instances_test and the door's :data:`pipeline.densepose.door.COUNT_KEYS` (for the stage's metrics JSON).

    Raises:
        Detectron2MissingError, InputError (every problem :func:`check_detectron2_inputs` finds, in
        one message, before any work; then bad detections, see :mod:`pipeline.densepose.door`), NoInstancesError.
    """
    check_detectron2_inputs(params, device)
    test = read_name_list(params.test_list) if params.test_list else None
    predictor = build_predictor(params.config, params.weights, resolve_device(device), params.score_threshold)
    mesh = _check_cse_embeddings(predictor, template, params.weights) if predictor.is_cse else None
    counts = DoorCounts()
    batches = _batches(params.images, params.batch_size, ranks)
    task = _folder_task(predictor, batches, crop, params.score_threshold, params.max_instances, counts, BOXES_PER_BATCH)
    with InstancesWriter(out_path, crop=crop, source="detectron2", template_hash=template.hash,
                         params=params_record or {}, test_names=test, cse_mesh=mesh) as w:
        bar = progress(total=sum(map(len, batches)), desc="densepose", unit="img", enabled=ranks.writer)
        write_images(w, task, len(batches), ranks, bar, unit="img")  # batch t runs on rank t mod P, rank 0 writes
        bar.close()
        counts.counts = sum_counts(counts.counts, ranks)
        ranks.leave_unless_writer()
        log.info("ran DensePose on %d images (%d skipped): %d instances kept", len(w.names), len(w.skipped), w.n)
        return w.finish(counts.summary())


def _check_cse_embeddings(predictor: Predictor, template, weights: str) -> str:
    """The CSE mesh's name, once the model's vertex embeddings are found equal to the template's."""
    check_cse_template(template, "detectron2")
    mesh = template.topology
    e = np.asarray(predictor.vertex_embeddings(mesh), np.float32)
    if e.shape != template.embedding.shape or not np.allclose(e, template.embedding, atol=1e-4):
        raise InputError(f"the model's vertex embeddings of {mesh!r} {e.shape} are not the template's "
                         f"{template.embedding.shape}: build the template from the same weights (template.cse_weights "
                         f"= detectron2.weights = {weights}) and rerun the template stage")
    log.info("CSE model: the vertex embeddings of %s equal the template's", mesh)
    return mesh


def write_store(params, template, out: str | Path, ranks: Ranks = ALONE) -> DenseposeSummary:
    """The source's entry point (the signature every source shares; ``stages/densepose.py`` picks the source)."""
    return write_detectron2_store(params.detectron2, params.densepose.crop, params.common.device, template, out,
                                  store_params(params), ranks)
