"""Training the correspondence network on rendered crops with their exact IUV (stage ``network``).

Batches of the train rows of ``data/images.zarr`` (:class:`pipeline.network.dataset.CropBatches`)
are photometrically augmented (:func:`augment`: brightness, contrast, per-channel gain, gamma,
Gaussian noise, all per image) and turned into the chart targets of :mod:`pipeline.network.losses`.
:func:`train_network` runs Adam with a cosine learning-rate decay and returns the network and the
curve of its losses. Geometric augmentation is left out: a flip swaps left and right parts and
mirrors U, which the exact targets would have to follow.

Determinism: the batch order comes from ``default_rng([seed, step])``, the augmentation from
``torch.Generator`` seeded with ``[seed, step]``, the initial weights from ``torch.manual_seed(seed)``;
nothing else draws, so a resumed run continues exactly as an uninterrupted one.

:func:`fit_network` is the stage: it trains ``network.steps`` steps (resuming from a partial checkpoint
with ``network.resume``), writes dvclive curves, checkpoints every ``network.checkpoint_every`` steps,
measures the result on the held-out crops (:func:`pipeline.network.measures.correspondence_report`)
and publishes the checkpoint. Many processes: under ``torchrun`` every process builds the same network,
takes its slice (``rank::world``) of each batch inside DistributedDataParallel (gloo on CPU, nccl on
CUDA), and process 0 alone writes; BatchNorm statistics are averaged over the processes at the end.
Size letters: ``B`` crops of a batch, ``S`` crop side (legend: :mod:`pipeline`).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.core.config import Params, as_dict
from pipeline.core.errors import InputError, UserError
from pipeline.core.io import partial_path, publish_partial, remove_path, resume_curves, save_json, written
from pipeline.core.stage import average_batchnorm, mean_over_processes, process_group, progress
from pipeline.core.store import SPLIT_TEST, SPLIT_TRAIN
from pipeline.images.store import open_images
from pipeline.network.checkpoint import read_network, save_network
from pipeline.network.dataset import CropBatches
from pipeline.network.losses import ChartTargets, chart_loss
from pipeline.network.measures import correspondence_report
from pipeline.network.model import ChartNet, standardise, unit_images
from pipeline.template.file import load_template

log = logging.getLogger(__name__)

__all__ = ["augment", "NetworkDiverged", "train_network", "NetworkResult", "fit_network"]

# keys of ``network`` that may change when a run is resumed
_RESUMABLE = ("steps", "resume", "checkpoint_every", "log_every", "test_instances")


class NetworkDiverged(UserError, RuntimeError):
    """The loss became NaN or infinite; the last checkpoint is kept."""


def augment(raw: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Photometric augmentation of images ``raw`` (B, 3, H, W) float in [0, 1] (:func:`unit_images`): per image
    brightness (x 0.7..1.3), contrast (0.7..1.3 about the mean), channel gains (0.9..1.1), gamma (0.8..1.25)
    and Gaussian noise (std 0..0.04). Returns images in [0, 1]."""
    b = raw.shape[0]

    def draw(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand((b, *shape, 1, 1), generator=generator)

    mean = raw.mean(dim=(1, 2, 3), keepdim=True)
    raw = (raw - mean) * draw(0.7, 1.3, 1) + mean
    raw = raw * draw(0.7, 1.3, 1) * draw(0.9, 1.1, 3)
    raw = raw.clamp(0, 1) ** draw(0.8, 1.25, 1)
    raw = raw + torch.randn(raw.shape, generator=generator) * draw(0.0, 0.04, 1)
    return raw.clamp(0, 1)


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, step]).generate_state(1)[0]))


def train_network(batches: CropBatches, steps: int, lr: float = 3e-3, width: int = 32, seed: int = 0,
                  device: str = "cpu", log_every: int = 50, on_log: Callable[[int, dict], None] | None = None,
                  *, start: dict | None = None, checkpoint_every: int = 0,
                  on_checkpoint: Callable[[int, ChartNet, torch.optim.Optimizer], None] | None = None,
                  rank: int = 0, world: int = 1, enabled: bool = False) -> tuple[ChartNet, list[dict]]:
    """Trains a :class:`ChartNet` to step ``steps`` with Adam (cosine decay of ``lr`` to 0 over ``steps``).

    Args:
        on_log: called as ``on_log(step, record)`` every ``log_every`` steps and at the end (e.g. dvclive).
        start: a checkpoint's ``model``, ``optimizer`` and ``step`` to continue from (None: fresh weights).
        on_checkpoint: called as ``on_checkpoint(step, net, optimizer)`` every ``checkpoint_every`` steps and at
            the end.
        rank, world: this process's slice ``rank::world`` of each batch (DistributedDataParallel when world > 1).
        enabled: draw a progress bar.
    Returns:
        the network in eval mode, and the records logged by this call: ``step``, ``loss``, ``coarse``, ``fine``,
        ``uv``, ``lr``.
    Raises:
        NetworkDiverged: a non-finite loss.
    """
    if steps < 1:
        raise InputError(f"the network trains for at least one step, got {steps}")
    torch.manual_seed(seed)
    net = ChartNet(width).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    first = 0
    if start is not None:
        net.load_state_dict(start["model"])
        opt.load_state_dict(start["optimizer"])
        first = int(start["step"])
    model = net if world == 1 else torch.nn.parallel.DistributedDataParallel(
        net, device_ids=[torch.device(device).index] if str(device).startswith("cuda") else None)
    history = []
    net.train()
    bar = progress(total=steps, initial=first, desc="network", unit="step", enabled=enabled)
    for step in range(first, steps):
        rate = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        for group in opt.param_groups:
            group["lr"] = rate
        batch = batches.batch(step)
        x = standardise(augment(unit_images(batch.rgb), _step_generator(seed, step)))[rank::world].to(device)
        targets = ChartTargets(*(t[rank::world].to(device) for t in batch.targets))
        loss, terms = chart_loss(model(x), targets)
        if not torch.isfinite(loss):
            bar.close()
            raise NetworkDiverged(f"network: loss {loss.item()} at step {step} is not finite; lower network.lr "
                                  f"(now {lr:g})" + (" (the last checkpoint is kept)" if on_checkpoint else ""))
        opt.zero_grad()
        loss.backward()
        opt.step()
        bar.update(1)
        done = step + 1
        if done % log_every == 0 or done == steps:
            record = {"step": done, "loss": mean_over_processes(loss, world),
                      **{k: mean_over_processes(v, world) for k, v in terms.items()}, "lr": rate}
            history.append(record)
            bar.set_postfix(loss=f"{record['loss']:.4f}")
            if on_log is not None:
                on_log(done, record)
        if world > 1 and done == steps:
            average_batchnorm(net, world)
        if on_checkpoint is not None and ((checkpoint_every and done % checkpoint_every == 0) or done == steps):
            on_checkpoint(done, net, opt)
    bar.close()
    return net.eval(), history


@dataclass(frozen=True)
class NetworkResult:
    """What :func:`fit_network` returns: the final step, the last logged losses and the measures of the held-out
    crops (``metrics/correspondence.json``, :func:`pipeline.network.measures.correspondence_report`)."""

    step: int
    losses: dict
    report: dict

    def metrics(self) -> dict:
        return self.report

    def lines(self) -> list[str]:
        out = [f"trained {self.step} steps; last losses: "
               + ", ".join(f"{k} {v:.4g}" for k, v in self.losses.items() if k != "step")]
        for who in ("network", "corruption"):
            m = self.report.get(who, {})
            if m:
                out.append(f"{who} on {self.report['instances']} held-out crops: part accuracy "
                           f"{m['part_accuracy']:.3f}, U/V error {m['uv_error']:.3f}, GPS {m['gps']:.3f}, "
                           f"AP {m['gps_ap']:.3f}")
        return out


def _check_resumable(ck: dict, params: Params, template_hash: str, path: Path) -> None:
    if ck.get("template_hash") != template_hash:
        raise InputError(f"network.resume: {path} was trained for template {ck.get('template_hash')!r}, the template "
                         f"is {template_hash!r}; delete it or set network.resume: false")
    if ck.get("optimizer") is None:
        raise InputError(f"network.resume: {path} holds no optimiser state to resume from; delete it or set "
                         "network.resume: false")
    old, new = dict(ck.get("params", {}).get("network", {})), as_dict(params.network)
    for k in _RESUMABLE:
        old.pop(k, None), new.pop(k, None)
    if old != new:
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise InputError(f"network.resume: {path} was trained with other network params "
                         f"({', '.join(f'network.{k}' for k in diff)}); delete it or set network.resume: false")


def fit_network(params: Params, images: str | Path, template: str | Path, out: str | Path,
                live_dir: str | Path | None = None, report: str | Path | None = None,
                stamp: str | Path | None = None) -> NetworkResult:
    """Stage ``network``'s entry point (module docstring).

    Args:
        images: ``data/images.zarr`` (stage ``images``).  template: ``data/template.npz``.
        out: the checkpoint (``models/network.pt``), written when training ends (an earlier run's stays there until
            then); until then it lives at :func:`pipeline.core.io.partial_path` (``models/.network.pt.partial``),
            where ``network.resume`` finds it. A resumed run's curves equal an uninterrupted run's.
        live_dir: dvclive folder of the curves (None: none).  report: ``metrics/correspondence.json`` (None: none).
        stamp: ``sources/network.txt`` (None: none): the checkpoint's path and sha256, the file that dvc.yaml's
            densepose stage depends on for ``densepose.source: network`` (sources/dvc.yaml), so a new network reruns
            it and no other source waits for one.
    Raises:
        NetworkDiverged, InputError (a store without images, a checkpoint that cannot be resumed).
    """
    cfg = params.network
    out = Path(out)
    ckpt = partial_path(out)
    live_partial = partial_path(live_dir) if live_dir is not None else None
    device, rank, world, _ = process_group(params.common.device)
    lead = rank == 0
    tmpl = load_template(template)
    root = open_images(images, tmpl.hash)
    split = np.asarray(root["split"][:])
    train_rows, test_rows = np.flatnonzero(split == SPLIT_TRAIN), np.flatnonzero(split == SPLIT_TEST)
    test_rows = test_rows[:cfg.test_instances] if cfg.test_instances else test_rows
    batches = CropBatches(root, train_rows, cfg.batch_size, cfg.seed)
    input_size = int(root.attrs["crop"])
    record = {k: as_dict(getattr(params, k)) for k in ("common", "network")}
    record["synthetic"] = dict(root.attrs["params"]).get("synthetic", {})

    if lead and not cfg.resume:
        for stale in (ckpt, live_partial):
            if stale is not None:
                remove_path(stale)
    found = next((p for p in (ckpt, out) if p.is_file()), None) if cfg.resume else None
    start = None
    if found is not None:
        start = read_network(found, tmpl.hash, device)
        _check_resumable(start, params, tmpl.hash, found)
        if start["step"] > cfg.steps:
            raise InputError(f"network.resume: {found} is at step {start['step']}, past network.steps = {cfg.steps}; "
                             "raise network.steps or set network.resume: false")
        log.info("resuming %s at step %d of %d", found, start["step"], cfg.steps)
    elif cfg.resume:
        log.info("network.resume: no checkpoint at %s, starting afresh", ckpt)

    live = None
    if lead and live_dir is not None:
        from dvclive import Live

        if start is not None:  # the curves up to the checkpoint's step, not what a killed run logged after it
            resume_curves(live_partial, Path(live_dir), int(start["step"]))
        live = Live(str(live_partial), resume=start is not None, dvcyaml=None, save_dvc_exp=False, report=None)

    def on_log(step: int, losses: dict) -> None:
        if live is not None:
            live.step = step
            for k, v in losses.items():
                if k != "step":
                    live.log_metric(f"train/{k}", v)
            live.make_summary()

    optimizer = {}

    def on_checkpoint(step: int, net: ChartNet, opt) -> None:
        optimizer["state"] = opt.state_dict()
        if lead:
            save_network(ckpt, net, input_size, tmpl.hash, record, step, {}, optimizer=optimizer["state"])

    log.info("training ChartNet width %d on %s x%d: %d train crops, %d steps of %d", cfg.width, device, world,
             len(train_rows), cfg.steps, cfg.batch_size)
    net, history = train_network(batches, cfg.steps, cfg.lr, cfg.width, cfg.seed, device, cfg.log_every,
                                 on_log if lead else None, start=start, checkpoint_every=cfg.checkpoint_every,
                                 on_checkpoint=on_checkpoint, rank=rank, world=world, enabled=lead)
    losses = history[-1] if history else dict((start or {}).get("metrics", {}).get("losses", {}))
    result = NetworkResult(cfg.steps, losses, {})
    if lead:
        measures = correspondence_report(net, root, test_rows, tmpl, input_size, device)
        result = NetworkResult(cfg.steps, losses, measures)
        save_network(ckpt, net, input_size, tmpl.hash, record, cfg.steps, {"losses": losses, **measures},
                     optimizer=optimizer.get("state", (start or {}).get("optimizer")))
        if live is not None:
            live.end()
        publish_partial(ckpt, out)
        if live_partial is not None and live_partial.exists():
            publish_partial(live_partial, Path(live_dir))
        if report is not None:
            save_json(report, measures)
        if stamp is not None:
            save_json(stamp, {"checkpoint": str(out), "sha256": _sha256(written(out))})
    return result


def _sha256(path: Path) -> str:
    """The sha256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
