"""The densepose stage under torchrun when things go wrong: a rank killed mid-stage, more processes than work.

(That 2 processes write the single process's bytes: tests/densepose/test_synthetic.py.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.densepose.store import open_densepose

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}  # the stage runs in tmp_path, a user's other folder


def _stage(tmp_path: Path, processes: int, bodies: int) -> tuple[list[str], Path]:
    params = tmp_path / f"params{processes}.yaml"
    params.write_text(yaml.safe_dump({"cluster": {"processes": processes}, "densepose": {"crop": 48},
                                      "synthetic": {"train_bodies": bodies, "test_bodies": 2, "views": 2,
                                                    "batch": 2}}))
    out = tmp_path / "dp.zarr"
    return [sys.executable, "-m", "stages.densepose", "--params", str(params), "--template",
            str(tmp_path / "template.npz"), "--out", str(out), "--png", str(tmp_path / "dp.png"),
            "--metrics", str(tmp_path / "dp.json")], out


def _rank_pids(rank: int) -> list[int]:
    """Processes of stages.densepose started by torchrun as ``rank``."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = (d / "environ").read_bytes().split(b"\0")
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if b"stages.densepose" in cmd and f"RANK={rank}".encode() in env and b"torch.distributed.run" not in cmd:
            pids.append(int(d.name))
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_a_rank_killed_mid_stage_leaves_no_store_and_a_rerun_makes_it(tmp_path, template):
    template.save(tmp_path / "template.npz")
    cmd, out = _stage(tmp_path, 2, bodies=40)
    run = subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and run.poll() is None:
        # the store is being written (rank 0 staged it) once rank 1 has rendered at least one batch
        if list(tmp_path.glob(".dp.zarr.*")) and _rank_pids(1):
            killed = _rank_pids(1)[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    log = run.communicate(timeout=120)[0]
    assert killed is not None, f"rank 1 never seen while the store was written:\n{log[-2000:]}"
    assert run.returncode == 2, log[-3000:]
    assert "under torchrun with 2 processes failed" in log
    assert not _rank_pids(0) and not _rank_pids(1)  # torchrun stopped rank 0 too: no orphan left
    assert not out.exists() and not (tmp_path / "dp.json").exists() and not (tmp_path / "dp.png").exists()

    cmd, out = _stage(tmp_path, 1, bodies=40)
    subprocess.run(cmd, cwd=tmp_path, env=ENV, check=True, capture_output=True)
    assert open_densepose(out, template.hash)["labels"].shape[0] == 84
    assert not list(tmp_path.glob(".dp.*"))  # the killed run's leftovers were swept


@pytest.mark.slow
def test_more_processes_than_batches_is_a_clear_error_and_writes_nothing(tmp_path, template):
    template.save(tmp_path / "template.npz")
    cmd, out = _stage(tmp_path, 3, bodies=2)  # 4 bodies in batches of 2: 2 batches for 3 processes
    res = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert "3 processes (cluster.processes or torchrun --nproc_per_node) for 2 batches of synthetic.batch" \
        in res.stderr, res.stderr[-3000:]
    assert not out.exists() and not list(tmp_path.glob(".dp*"))


class _SeededPredictor:
    """A stand-in model whose detections depend only on the image (not on the order it sees them in, unlike
    test_detectron2_source's): image pixel (0, 0) holds its number of people, pixel (0, 1) its seed."""

    is_cse = False

    def __call__(self, images):
        import torch

        from pipeline.densepose import detectron2 as d2

        out = []
        for img in images:
            k, gen = int(img[0, 0, 0]), torch.Generator().manual_seed(int(img[0, 1, 0]))
            h, w = img.shape[:2]
            boxes = torch.tensor([[i, i, w - 1 - i, h - 1 - i] for i in range(k)], dtype=torch.float32).reshape(k, 4)
            out.append(d2.Detections(boxes, torch.linspace(0.95, 0.5, k) if k else torch.zeros(0),
                                     chart=(torch.randn(k, 25, 112, 112, generator=gen),
                                            torch.randn(k, 2, 112, 112, generator=gen),
                                            torch.rand(k, 25, 112, 112, generator=gen),
                                            torch.rand(k, 25, 112, 112, generator=gen))))
        return out


def _sources(folder: Path, dump: Path, out: Path, ranks) -> tuple:
    """The detectron2 source's inference (a stand-in model) and the precomputed source's store, on ``ranks``."""
    from types import SimpleNamespace

    import numpy as np

    from pipeline.core.config import load_params_dict
    from pipeline.densepose import detectron2 as d2
    from pipeline.densepose.door import DoorCounts
    from pipeline.densepose.precomputed import write_precomputed_store

    counts = DoorCounts()
    images, skipped = d2.infer_folder(_SeededPredictor(), folder, 16, batch_size=2, score_threshold=0.6,
                                      counts=counts, ranks=ranks)
    inferred = ([(im.name, im.boxes, im.scores, im.labels, im.uv) for im in images], skipped, counts.counts)
    params = load_params_dict({"precomputed": {"dump": str(dump)}}).precomputed
    template = SimpleNamespace(hash="abc", source="anny", topology="t", embedding=np.zeros((30, 16), np.float32))
    try:
        write_precomputed_store(params, 16, template, out, {"k": 1}, ranks)
    except SystemExit as e:
        return inferred, e.code
    return inferred, "wrote"


def _source_worker(rank: int, init: str, folder: Path, dump: Path, out: Path, queue) -> None:
    import torch.distributed as dist

    from pipeline.core.ranks import Ranks

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    queue.put((rank, _sources(folder, dump, out, Ranks(rank, 2))))


def test_real_image_sources_on_two_ranks_give_the_single_process_results(tmp_path):
    """detectron2 (3 batches of 2 images: an unreadable one among them) and precomputed (3 images)."""
    import cv2
    import numpy as np
    import torch
    import torch.multiprocessing as mp
    from conftest import tree_bytes
    from dump_fixture import fake_densepose_modules

    from pipeline.core.ranks import ALONE

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, k in enumerate([2, 0, 3, 1, 4]):
        img = np.full((60, 40, 3), 128, np.uint8)
        img[0, 0], img[0, 1] = k, 10 + i
        assert cv2.imwrite(str(folder / f"img{i:02d}.png"), img)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    gen = torch.Generator().manual_seed(3)
    with fake_densepose_modules() as dp:
        dump = []
        for i, k in enumerate([2, 1, 3]):
            boxes = torch.tensor([[2.0 + j, 3.0, 30.0, 40.0 + j] for j in range(k)])
            charts = [dp.chart(labels=torch.randint(0, 25, (37 + j, 28 - j), generator=gen),  # the box's size
                               uv=torch.rand(2, 37 + j, 28 - j, generator=gen), sigma_2=torch.rand(37 + j, 28 - j))
                      for j in range(k)]
            dump.append({"file_name": f"im{i}.jpg", "scores": torch.linspace(0.99, 0.9, k), "pred_boxes_XYXY": boxes,
                         "pred_densepose": charts})
        torch.save(dump, tmp_path / "results.pkl")

    alone = _sources(folder, tmp_path / "results.pkl", tmp_path / "alone.zarr", ALONE)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_source_worker, args=(r, f"file://{tmp_path / 'pg'}", folder, tmp_path / "results.pkl",
                                                      tmp_path / "ranks.zarr", queue)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)

    (images, skipped, counts), status = got[0]
    assert status == "wrote" and got[1][1] == 0 and got[1][0][0] == []  # rank 1 ended once its share was done
    assert skipped == alone[0][1] == ["broken.jpg"] and counts == alone[0][2]
    assert [im[0] for im in images] == [im[0] for im in alone[0][0]] == [f"img{i:02d}.png" for i in range(5)]
    for a, b in zip(images, alone[0][0]):
        assert all(np.array_equal(x, y) for x, y in zip(a[1:], b[1:]))
    a, b = tree_bytes(tmp_path / "ranks.zarr"), tree_bytes(tmp_path / "alone.zarr")
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)


def _network_store(params, template_path: Path, checkpoint: Path, out: Path, ranks):
    from pipeline.densepose.network import write_network_store
    from pipeline.template.file import load_template

    try:
        write_network_store(params, load_template(template_path), out, checkpoint, ranks)
        return "wrote"
    except SystemExit as e:  # ranks other than 0 leave the group and end once their share is done
        return e.code


def _network_worker(rank: int, jobs: list, queue) -> None:
    import torch.distributed as dist

    from pipeline.core.ranks import Ranks

    status = []
    for init, args in jobs:  # one process group a store, as one stage run has
        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
        status.append(_network_store(*args, Ranks(rank, 2)))
        if dist.is_initialized():
            dist.destroy_process_group()
    queue.put((rank, status))


def test_the_network_source_on_two_ranks_writes_the_single_process_stores(tmp_path, template):
    """On the synthetic bodies' images (3 batches of 1 body) and on a folder of images with a box outside its
    image, a grey image and an unreadable one (the door's and the reader's counts summed over the ranks)."""
    import json

    import cv2
    import numpy as np
    import torch.multiprocessing as mp
    from conftest import tree_bytes
    from network_fixture import person_everywhere_network

    from pipeline.core.config import load_params_dict
    from pipeline.core.ranks import ALONE

    template.save(tmp_path / "t.npz")
    checkpoint = person_everywhere_network(tmp_path / "network.pt", template.hash)
    rgb = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), rgb)
    cv2.imwrite(str(tmp_path / "grey.png"), rgb[..., 0])
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "boxes.json").write_text(json.dumps({"images": [
        {"file_name": "a.png", "boxes": [[10, 5, 50, 55], [100, 100, 120, 130]]},
        {"file_name": "grey.png", "boxes": [[1, 1, 30, 40]]}, {"file_name": "broken.jpg", "boxes": [[1, 1, 9, 9]]}]}))
    common = {"densepose": {"source": "network", "crop": 16}, "common": {"device": "cpu"}}
    params = [load_params_dict({**common, "synthetic": {"train_bodies": 2, "test_bodies": 1, "views": 2, "batch": 1}}),
              load_params_dict({**common, "network_source": {"images": str(tmp_path),
                                                             "boxes_json": str(tmp_path / "boxes.json")}})]
    alone = [tmp_path / "bodies1.zarr", tmp_path / "folder1.zarr"]
    assert [_network_store(p, tmp_path / "t.npz", checkpoint, o, ALONE) for p, o in zip(params, alone)] == ["wrote"] * 2
    ranked = [tmp_path / "bodies2.zarr", tmp_path / "folder2.zarr"]
    jobs = [(f"file://{tmp_path / f'pg{k}'}", (p, tmp_path / "t.npz", checkpoint, o))
            for k, (p, o) in enumerate(zip(params, ranked))]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_network_worker, args=(r, jobs, queue)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert got == {0: ["wrote", "wrote"], 1: [0, 0]}
    for a, b in zip(alone, ranked):
        x, y = tree_bytes(a), tree_bytes(b)
        assert x.keys() == y.keys() and all(x[k] == y[k] for k in x), a.name


def _iuv_store(folder: Path, out: Path, ranks):
    """The precomputed source (format iuv_png) on ``folder``: its metrics, or the exit status of a rank that left."""
    from types import SimpleNamespace

    import numpy as np

    from pipeline.core.config import load_params_dict
    from pipeline.densepose.precomputed import write_precomputed_store

    params = load_params_dict({"precomputed": {"format": "iuv_png", "iuv_folder": str(folder),
                                               "boxes_json": str(folder / "boxes.json")}}).precomputed
    template = SimpleNamespace(hash="abc", source="anny", topology="t", embedding=np.zeros((30, 16), np.float32))
    try:
        return write_precomputed_store(params, 16, template, out, {"k": 1}, ranks).metrics()
    except SystemExit as e:  # ranks other than 0 leave the group and end once their share is done
        return e.code


def _iuv_worker(rank: int, init: str, folder: Path, out: Path, queue) -> None:
    import torch.distributed as dist

    from pipeline.core.ranks import Ranks

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    queue.put((rank, _iuv_store(folder, out, Ranks(rank, 2))))


def test_an_iuv_folder_on_two_ranks_writes_the_single_process_store(tmp_path):
    """Four IUV PNGs, one unreadable: each image is read on one rank (issue 25: not every image on every rank), its
    door counts summed over the ranks; an image with its photo and more boxes than a batch, some clipped or empty."""
    import json

    import cv2
    import numpy as np
    import torch.multiprocessing as mp
    from conftest import tree_bytes

    from pipeline.core.ranks import ALONE

    folder = tmp_path / "iuv"
    folder.mkdir()
    rng = np.random.default_rng(0)
    entries = []
    for name, k in (("a", 70), ("b", 3), ("c", 2), ("d", 0)):
        iuv = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
        iuv[..., 0] = rng.integers(0, 25, (60, 80))
        assert cv2.imwrite(str(folder / f"{name}_IUV.png"), iuv)
        x0, y0 = rng.uniform(0, 78, k), rng.uniform(0, 58, k)
        boxes = np.round(np.stack([x0, y0, x0 + rng.uniform(0, 30, k), y0 + rng.uniform(0, 40, k)], 1), 1)
        entries.append({"file_name": f"{name}.png", "iuv": f"{name}_IUV.png", "boxes": boxes.tolist()})
    assert cv2.imwrite(str(folder / "a.png"), rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    (folder / "b_IUV.png").write_bytes(b"not a png")
    (folder / "boxes.json").write_text(json.dumps({"images": entries}))

    alone = _iuv_store(folder, tmp_path / "alone.zarr", ALONE)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_iuv_worker, args=(r, f"file://{tmp_path / 'pg'}", folder, tmp_path / "ranks.zarr",
                                                   queue)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert got[1] == 0 and got[0] == alone and alone["images_skipped"] == 1 and alone["clipped_boxes"] > 0
    a, b = tree_bytes(tmp_path / "ranks.zarr"), tree_bytes(tmp_path / "alone.zarr")
    assert "rgb/zarr.json" not in a and a.keys() == b.keys() and all(a[k] == b[k] for k in a)
