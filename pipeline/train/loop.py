"""The trainer of stage ``train`` (METHOD.md §5, supp. A): one process, or many under ``torchrun``.

The checkpoint (``models/model.pt``) is written and read by :mod:`pipeline.train.checkpoint`.

Many processes: ``torchrun --nproc_per_node=N -m stages.train ...`` sets ``WORLD_SIZE``; every
process builds the same model, trains its slice of each batch inside DistributedDataParallel
(gloo on CPU, nccl on CUDA), and process 0 alone writes checkpoints, curves and the progress bar.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline.core.config import Params, TrainParams, as_dict
from pipeline.core.errors import InputError, UserError
from pipeline.core.io import partial_path, publish_partial, remove_path, resume_curves
from pipeline.core.ranks import from_environment
from pipeline.core.stage import average_batchnorm, mean_over_processes, process_group, progress
from pipeline.geometry.lbo import load_basis, unit_rms
from pipeline.geometry.mesh import vertex_areas
from pipeline.keypoints.store import holdout_rows, instances_fingerprint, open_keypoints
from pipeline.template.file import canonical_template, load_template
from pipeline.train.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from pipeline.train.data import KeypointStream
from pipeline.train.losses import TrainingObjective, arap_weights
from pipeline.train.model import LiftingModel, normalise
from pipeline.train.part_init import logit_initialiser
from pipeline.train.rounds import FirstRound

log = logging.getLogger(__name__)

__all__ = ["lr_at", "TrainingDiverged", "TrainResult", "build_objective", "training_seed", "parameter_groups",
           "make_optimizer", "inplane_rotations", "normalised_truth", "train", "train_round", "turned_in_split"]

# keys of ``train`` that may change when a run is resumed
_RESUMABLE = ("epochs", "resume", "checkpoint_every", "log_every", "chunks_in_memory")


class TrainingDiverged(UserError, RuntimeError):
    """The loss became NaN/inf or exploded; the last good checkpoint is kept."""


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` returns: the trained objective (model + Ψ), the final step and the last logged
    losses (the stage's metrics are the dvclive files written while training)."""

    objective: TrainingObjective
    step: int
    metrics: dict

    def lines(self) -> list[str]:
        losses = ", ".join(f"{k} {v:.4g}" for k, v in self.metrics.items() if isinstance(v, float))
        return [f"trained {self.step} steps" + (f"; last losses: {losses}" if losses else "")]


def lr_at(step: int, total_steps: int, cfg: TrainParams) -> float:
    """Learning-rate factor at ``step`` of ``total_steps``: 1, then ``lr_decay`` from ``lr_decay_at`` on."""
    return cfg.lr_decay if step >= cfg.lr_decay_at * total_steps else 1.0


def training_seed(params: Params) -> int:
    """The torch seed of the model's initialisation: from ``common.seed`` and ``train.seed`` together."""
    return int(np.random.SeedSequence([params.common.seed, params.train.seed]).generate_state(1)[0])


def build_objective(params: Params, vertices: np.ndarray, faces: np.ndarray, up: np.ndarray,
                    forward: np.ndarray, evecs: np.ndarray,
                    vertex_part: np.ndarray | None = None) -> tuple[TrainingObjective, float]:
    """Model, Ψ and losses from the template (metres), the LBO eigenvectors (N, K) and (for
    ``loss.mirror_parts: limbs``) the (N,) vertex parts, seeded.

    Returns the objective and the template scale (metres per canonical unit).
    """
    torch.manual_seed(training_seed(params))
    canon, scale = canonical_template(vertices, up, forward)
    model = LiftingModel(params.model, canon, unit_rms(np.asarray(evecs, np.float64)),
                         init_logits=logit_initialiser(params.model, vertex_areas(canon, faces)))
    needs_arap = params.loss.arap > 0 and params.model.type != "c3dpo"
    arap = arap_weights(canon, faces) if needs_arap else None
    return TrainingObjective(model, params.loss, arap, faces, vertex_part), scale


# template-side parameters: never weight-decayed (decay would pull the shape towards 0, not the template)
TEMPLATE_SIDE = ("model.logits", "model.rest", "model.blend", "model.shape_basis", "model.mean_shape")
PART_PARAMS = ("model.logits", "model.rest")  # trained at train.part_lr


def parameter_groups(module: torch.nn.Module, cfg: TrainParams) -> list[dict]:
    """Optimiser groups of a :class:`TrainingObjective`: ``parts`` (A, rest transforms: ``part_lr``, no
    decay), ``template`` (blendshapes, shape bases, mean shape: no decay), ``decay`` (the networks' weight
    matrices: ``weight_decay``) and ``no_decay`` (biases, BatchNorm). Each group's ``base_lr`` is its lr
    before the schedule."""
    groups = {"parts": [], "template": [], "decay": [], "no_decay": []}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if name in PART_PARAMS:
            groups["parts"].append(p)
        elif name in TEMPLATE_SIDE:
            groups["template"].append(p)
        elif p.ndim >= 2:
            groups["decay"].append(p)
        else:
            groups["no_decay"].append(p)
    lr = {"parts": cfg.part_lr}
    decay = {"decay": cfg.weight_decay}
    return [{"name": k, "params": v, "base_lr": lr.get(k, cfg.lr), "lr": lr.get(k, cfg.lr),
             "weight_decay": decay.get(k, 0.0)} for k, v in groups.items() if v]


def make_optimizer(module: torch.nn.Module, cfg: TrainParams) -> torch.optim.Optimizer:
    """``adamw`` (decoupled decay), ``adam`` (decay as L2 in the gradient) or ``sgd`` (momentum; the paper's),
    over :func:`parameter_groups`: template-side parameters are never decayed."""
    groups = parameter_groups(module, cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise InputError(f"train.optimizer = {cfg.optimizer!r}: allowed adamw, adam or sgd")


def inplane_rotations(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, 2, 2) float32 rotations of the image plane by uniform random angles."""
    a = torch.rand(n, generator=generator) * (2 * math.pi)
    c, s = torch.cos(a), torch.sin(a)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def normalised_truth(vertices: torch.Tensor, camera: torch.Tensor, centre: torch.Tensor,
                     scale: torch.Tensor) -> torch.Tensor:
    """True camera-frame shapes in the model's normalised keypoint frame (orthographic data).

    Args:
        vertices: (B, N, 3) float metres. camera: (B, 3) float f, cx, cy. centre: (B, 2), scale: (B,) of
            :func:`pipeline.train.model.normalise` (pixels).
    Returns:
        (B, N, 3) float: ((f x + c - centre) / scale, f z / scale).
    """
    f = camera[:, None, :1]
    xy = (f * vertices[..., :2] + camera[:, None, 1:] - centre[:, None]) / scale[:, None, None]
    z = f * vertices[..., 2:] / scale[:, None, None]
    return torch.cat([xy, z], dim=-1)


def _check_resumable(ck: dict, params: Params, template_hash: str, path: Path) -> None:
    if ck.get("template_hash") != template_hash:
        raise InputError(f"train.resume: {path} was trained on template {ck.get('template_hash')!r}, "
                         f"the template is {template_hash!r}; delete it or set train.resume: false")
    now = as_dict(params)
    for section in ("model", "loss", "train", "common"):
        old, new = dict(ck["params"].get(section, {})), dict(now[section])
        if section == "train":
            for k in _RESUMABLE:
                old.pop(k, None), new.pop(k, None)
        if section == "common":
            old.pop("device", None), new.pop("device", None)
        if old != new:
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise InputError(f"train.resume: {path} was trained with other {section} params "
                             f"({', '.join(f'{section}.{k}' for k in diff)}); delete it or set train.resume: false")


def _load_basis(lbo: str | Path, template_hash: str, params: Params) -> np.ndarray:
    """(N, K) eigenvectors of ``lbo``, checked against the template and ``model.lbo_basis``."""
    evecs = load_basis(lbo, template_hash).evecs
    if params.model.lbo_basis > evecs.shape[1]:
        raise InputError(f"model.lbo_basis = {params.model.lbo_basis} > the {evecs.shape[1]} "
                         f"eigenvectors in {lbo} (raise lbo.k)")
    return evecs


@dataclass
class _Progress:
    """Where training stands: the step, the first loss (the explosion test's yardstick), the last logged
    losses and the last good checkpoint (step, file)."""

    step: int = 0
    first_loss: float | None = None
    metrics: dict = field(default_factory=dict)
    last_saved: tuple[int, Path] | None = None


def _resume(start: Path, objective: TrainingObjective, optimizer, params: Params, template_hash: str,
            device: str) -> tuple[_Progress, torch.Tensor | None]:
    """Loads a checkpoint into the objective and optimiser; returns the progress and its initial segmentation."""
    ck = read_checkpoint(start, device)
    _check_resumable(ck, params, template_hash, start)
    objective.model.load_state_dict(ck["model"])
    if objective.psi is not None:
        objective.psi.load_state_dict(ck["psi"])
    optimizer.load_state_dict(ck["optimizer"])
    torch.set_rng_state(ck["rng"])
    state = _Progress(ck["step"], ck["first_loss"], dict(ck["metrics"] or {}), (ck["step"], start))
    return state, ck.get("segmentation_init")


def _batch_inputs(batch, device: str, oracle: bool, inplane: bool) -> tuple[torch.Tensor, ...]:
    """A batch as the objective takes it: normalised keypoints (B, N, 2), visibility (B, N), the true
    shapes in the same frame (B, N, 3; only for the oracle loss, else None), the counts (B, N) and the
    confidences (B, N; only for ``loss.confidence``, else None), with the keypoints (and truth) rotated about
    the view axis when ``inplane``."""
    xy, vis = batch.xy.to(device), batch.visible.to(device)
    norm = normalise(xy, vis)
    kp, truth = norm.xy, None
    if oracle:
        truth = normalised_truth(batch.vertices.to(device), batch.camera.to(device), norm.centre, norm.scale)
    if inplane:
        rot = inplane_rotations(len(kp)).to(device)
        kp = kp @ rot.transpose(-1, -2)
        if truth is not None:
            truth = torch.cat([truth[..., :2] @ rot.transpose(-1, -2), truth[..., 2:]], dim=-1)
    confidence = batch.confidence.to(device) if batch.confidence is not None else None
    return kp, vis, truth, batch.count.to(device), confidence


def _divergence(value: float, state: _Progress, cfg: TrainParams) -> TrainingDiverged | None:
    """The error that stops training when the loss ``value`` is not finite or exploded, else None."""
    if math.isfinite(value) and value <= cfg.explode_factor * max(state.first_loss, 1e-12):
        return None
    kept = (f"the last good checkpoint (step {state.last_saved[0]}) is kept at {state.last_saved[1]} "
            "(train.resume: true continues from it)") if state.last_saved is not None else "no checkpoint was written yet"
    why = "is not finite" if not math.isfinite(value) else \
        f"exceeds train.explode_factor = {cfg.explode_factor:g} x the first loss {state.first_loss:.4g}"
    return TrainingDiverged(f"train: loss {value:.4g} at step {state.step} {why}; {kept}. "
                            f"Lower train.lr (now {cfg.lr:g}) or check the keypoints.")


def _log_losses(state: _Progress, live, bar) -> None:
    """Shows the last losses on the progress bar and logs them as dvclive curves."""
    bar.set_postfix(loss=f"{state.metrics['loss']:.4f}", rep=f"{state.metrics['reprojection']:.4f}")
    if live is not None:
        live.step = state.step
        for k, v in state.metrics.items():
            live.log_metric(f"train/{k}", v)
        live.make_summary()


def train(params: Params, keypoints: str | Path, template: str | Path, lbo: str | Path, out: str | Path,
          live_dir: str | Path | None = None) -> TrainResult:
    """Trains ``params.model`` on the train split of ``keypoints``; writes the checkpoint ``out``.

    One round (``train.rounds: 1``): :func:`train_round`. Two rounds (:mod:`pipeline.train.rounds`): round 1
    trains into the hidden ``.NAME.round1`` beside ``out`` (no curves; resumable like ``out``), its
    reconstruction flags the keypoints it turns away, and round 2 trains anew with the same seed with them
    hidden, into ``out`` and ``live_dir``, keeping round 1 inside its checkpoint; ``.NAME.round1`` is then
    removed. ``train.resume`` without ``.NAME.round1`` but with a round-2 checkpoint (``out``'s partial or
    finished one, e.g. to train further) takes round 1 from that checkpoint, so round 2 goes on with the
    flags it was trained with. Args, returns and raises as :func:`train_round`'s.
    """
    if params.train.rounds == 1:
        return train_round(params, keypoints, template, lbo, out, live_dir)
    out = Path(out)
    round_one = out.parent / f".{out.name}.round1"
    tmpl = load_template(template)
    first = _saved_first_round(out) if params.train.resume and not round_one.is_file() and \
        not partial_path(round_one).is_file() else None
    if first is None:
        first = FirstRound(train_round(params, keypoints, template, lbo, round_one, None, desc="train round 1 of 2")
                           .objective.model, tmpl.faces, params.train.turned_z)
    hidden = turned_in_split(first, open_keypoints(keypoints, tmpl.hash), split=0)
    log.info("round 1 turns away %d keypoints of the train split (normal z > train.turned_z = %g): round 2 "
             "trains without them", int(hidden.sum()), params.train.turned_z)
    result = train_round(params, keypoints, template, lbo, out, live_dir, hidden=hidden, first_round=first,
                         desc="train round 2 of 2")
    if from_environment().writer:
        remove_path(round_one)
    return result


def _saved_first_round(out: Path) -> FirstRound | None:
    """Round 1 kept in round 2's checkpoint (``out``'s partial one, else ``out``), or None (no checkpoint, or one of
    a single round)."""
    saved = next((p for p in (partial_path(out), out) if p.is_file()), None)
    first = load_checkpoint(saved)[1]["first_round"] if saved is not None else None
    if first is not None:
        log.info("train.resume: round 1 from %s (kept in its checkpoint), not retrained", saved)
    return first


def turned_in_split(first: FirstRound, store, split: int, batch_size: int = 512) -> np.ndarray:
    """(n, N) bool: the keypoints of ``split``'s instances of an open keypoints store that ``first`` turns away
    (False elsewhere), ``batch_size`` instances at a time (each batch reads its span of the store once)."""
    hidden = np.zeros(store["visible"].shape, bool)
    rows = np.flatnonzero(np.asarray(store["split"][:]) == split)
    for a in range(0, len(rows), batch_size):
        r = rows[a:a + batch_size]
        span, local = slice(int(r[0]), int(r[-1]) + 1), r - r[0]
        xy = torch.as_tensor(np.asarray(store["xy"][span])[local], dtype=torch.float32)
        visible = torch.as_tensor(np.asarray(store["visible"][span])[local], dtype=torch.bool)
        hidden[r] = first.turned(xy, visible).cpu().numpy()
    return hidden


def train_round(params: Params, keypoints: str | Path, template: str | Path, lbo: str | Path, out: str | Path,
                live_dir: str | Path | None = None, hidden: np.ndarray | None = None,
                first_round: FirstRound | None = None, desc: str = "train") -> TrainResult:
    """Trains ``params.model`` once on the train split of ``keypoints``; writes the checkpoint ``out``.

    Until training ends, the checkpoint (rewritten every ``train.checkpoint_every`` steps) and the
    curves live under their partial names (:func:`pipeline.core.io.partial_path`: ``.model.pt.partial``),
    where ``train.resume`` finds them; at the end they are moved onto ``out`` and ``live_dir``, which
    until then hold an earlier run's finished model and curves, if any. A resumed run's curves equal an
    uninterrupted run's (rows logged after the checkpoint are dropped).

    Args:
        keypoints, template, lbo: ``data/keypoints.zarr``, ``data/template.npz``, ``data/lbo.npz``.
        out: checkpoint path, written when training ends.
        live_dir: dvclive folder for curves and final metrics (None: no curves).
        hidden: (n, N) bool keypoints trained on as invisible (round 2), or None.
        first_round: round 1, kept in the checkpoint (round 2), or None. desc: the progress lines' name.
    Raises:
        TrainingDiverged: a non-finite or exploding loss (the partial checkpoint is the last good one).
        ValueError: ``train.resume`` with a checkpoint of other params or another template.
    """
    cfg = params.train
    out = Path(out)
    ckpt = partial_path(out)
    live_partial = partial_path(live_dir) if live_dir is not None else None
    device, rank, world, local_rank = process_group(params.common.device)
    lead = rank == 0

    # the model, its optimiser and the batches
    tmpl = load_template(template)
    evecs = _load_basis(lbo, tmpl.hash, params)
    objective, scale = build_objective(params, tmpl.vertices, tmpl.faces, tmpl.up, tmpl.forward, evecs,
                                       tmpl.vertex_part)
    seg_init = objective.model.segmentation().detach().cpu()  # (N, M), drawn before and after training
    objective.to(device)
    optimizer = make_optimizer(objective, cfg)
    oracle = params.loss.oracle_3d > 0
    held = None
    store = open_keypoints(keypoints, tmpl.hash)  # its split, bodies and boxes are read once more; the stream opens it
    trained_on = {"keypoints": str(keypoints), "instances": instances_fingerprint(store)}  # recorded in the checkpoint
    if cfg.val_share > 0:
        held = holdout_rows(store, cfg.val_share, params.common.seed)
        log.info("train.val_share = %g: %d train instances held out for validation", cfg.val_share, int(held.sum()))
    stream = KeypointStream(keypoints, cfg.batch_size, cfg.chunks_in_memory, training_seed(params),
                            split=0, template_hash=tmpl.hash, rank=rank, world=world, truth=oracle, exclude=held,
                            confidence=params.loss.confidence, hidden=hidden)
    spe = stream.steps_per_epoch
    total = cfg.epochs * spe

    # afresh, or from the partial checkpoint (or a finished one, to train further)
    if lead and not cfg.resume:
        for stale in (ckpt, live_partial):
            if stale is not None:
                remove_path(stale)
    start = next((p for p in (ckpt, out) if p.is_file()), None) if cfg.resume else None
    state = _Progress()
    if start is not None:
        state, saved_init = _resume(start, objective, optimizer, params, tmpl.hash, device)
        seg_init = saved_init if saved_init is not None else seg_init
        log.info("resuming %s at step %d of %d", start, state.step, total)
    elif cfg.resume:
        log.info("train.resume: no checkpoint at %s, starting afresh", ckpt)

    def save() -> None:
        save_checkpoint(ckpt, objective.model, objective.psi, optimizer, as_dict(params), state.step, tmpl.hash, scale,
                        state.metrics, state.first_loss, seg_init, trained_on, first_round)
        state.last_saved = (state.step, ckpt)

    net = objective
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            objective, device_ids=[local_rank] if device.startswith("cuda") else None)
    live = None
    if lead and live_dir is not None:
        from dvclive import Live

        resumed = start is not None and state.step > 0
        if resumed:  # the curves up to the checkpoint's step, not what a killed run logged after it
            resume_curves(live_partial, Path(live_dir), state.step)
        live = Live(str(live_partial), resume=resumed, dvcyaml=None, save_dvc_exp=False, report=None)
    log.info("training %s (%d parameters) on %s x%d: %d train instances, %d steps/epoch, %d steps",
             params.model.type, sum(p.numel() for p in objective.parameters()), device, world,
             stream.n_split, spe, total)

    # the steps
    bar = progress(total=total, initial=state.step, desc=desc, unit="step", enabled=lead)
    objective.train()
    while state.step < total:
        epoch = state.step // spe
        for batch in stream.epoch(epoch, skip=state.step - epoch * spe):
            factor = lr_at(state.step, total, cfg)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            objective.progress = state.step / total  # the robust norm's annealing
            loss, terms = net(*_batch_inputs(batch, device, oracle, cfg.inplane_augment))
            value = mean_over_processes(loss, world)
            if state.first_loss is None:
                state.first_loss = value
            error = _divergence(value, state, cfg)
            if error is not None:
                bar.close()
                raise error
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            state.step += 1
            bar.update(1)
            if state.step % cfg.log_every == 0 or state.step == total:
                state.metrics = {"loss": value, "lr": cfg.lr * factor, **{k: float(v) for k, v in terms.items()}}
                _log_losses(state, live, bar)
            if lead and (state.step % cfg.checkpoint_every == 0 or state.step == total):
                save()
    bar.close()

    # the end: one model for all processes, the outputs under their names
    if world > 1:
        average_batchnorm(objective, world)
        if lead:
            save()
    if live is not None:
        live.end()
    if lead:
        if not ckpt.is_file():  # resumed a run that was already complete
            save()
        publish_partial(ckpt, out)
        if live_partial is not None and live_partial.exists():
            publish_partial(live_partial, Path(live_dir))
    log.info("trained %d steps; last losses: %s", state.step, {k: round(v, 5) for k, v in state.metrics.items()})
    return TrainResult(objective, state.step, state.metrics)
