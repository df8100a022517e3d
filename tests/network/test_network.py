"""The correspondence network (pipeline/network/): Detectron2's chart-head output shapes, accepted by
the converters unchanged; the DensePose losses; it learns the synthetic images' correspondence."""

import numpy as np
import pytest
import torch

from pipeline.core.config import load_params_dict
from pipeline.core.errors import InputError
from pipeline.densepose.convert import chart_output_to_crops
from pipeline.densepose.store import open_densepose
from pipeline.densepose.synthetic import write_synthetic_store
from pipeline.network.losses import chart_loss, chart_targets
from pipeline.network.model import ChartNet, HEATMAP, normalise_images
from pipeline.template.file import decode_iuv


@pytest.mark.parametrize("size", [112, 64, 128])
def test_outputs_have_detectron2_chart_head_shapes_and_the_converters_take_them(size):
    torch.manual_seed(0)
    net = ChartNet(width=8).eval()
    rgb = torch.randint(0, 256, (3, size, size, 3), dtype=torch.uint8)
    with torch.no_grad():
        out = net(normalise_images(rgb))
    assert out.coarse_segm.shape == (3, 2, HEATMAP, HEATMAP) == (3, 2, 112, 112)
    assert out.fine_segm.shape == out.u.shape == out.v.shape == (3, 25, 112, 112)
    crops = chart_output_to_crops(out.fine_segm, out.coarse_segm, out.u, out.v, 40)
    assert crops.labels.shape == (3, 40, 40) and crops.labels.dtype == torch.uint8
    assert crops.uv.shape == (3, 2, 40, 40) and int(crops.labels.max()) <= 24


def test_bad_inputs_are_refused():
    with pytest.raises(InputError, match="uint8"):
        normalise_images(torch.zeros((1, 8, 8, 3)))
    with pytest.raises(InputError, match="divisible by 8"):
        ChartNet(width=8)(torch.zeros((1, 3, 60, 60)))
    with pytest.raises(InputError, match="parts 0..24"):
        chart_targets(torch.full((1, 4, 4), 255), torch.zeros((1, 2, 4, 4)))


def test_targets_resample_to_the_heatmap_and_occluders_become_background():
    labels = torch.zeros((1, 8, 8), dtype=torch.long)
    labels[0, 2:6, 2:6] = 7
    uv = torch.full((1, 2, 8, 8), 0.25)
    occ = torch.zeros((1, 8, 8), dtype=torch.bool)
    occ[0, 2:4, 2:6] = True
    t = chart_targets(labels, uv, occ)
    assert t.labels.shape == (1, 112, 112) and t.u.shape == (1, 112, 112)
    assert int(t.fg.sum()) == 8 * 14 * 14  # 8 of the 64 crop pixels, each 14 x 14 heatmap pixels
    assert set(t.labels.unique().tolist()) == {0, 7}


def test_a_perfect_prediction_has_zero_uv_loss_and_low_segmentation_loss():
    labels = torch.tensor([[[0, 3], [12, 24]]])
    uv = torch.rand((1, 2, 2, 2))
    t = chart_targets(labels, uv)
    big = 30.0
    coarse = torch.stack([(~t.fg).float(), t.fg.float()], 1) * big
    fine = torch.nn.functional.one_hot(t.labels, 25).permute(0, 3, 1, 2).float() * big
    u = t.u[:, None].expand(-1, 25, -1, -1).clone()
    v = t.v[:, None].expand(-1, 25, -1, -1).clone()
    from pipeline.network.model import ChartOutput
    total, terms = chart_loss(ChartOutput(coarse, fine, u, v), t)
    assert float(terms["uv"]) == 0.0 and float(terms["coarse"]) < 1e-6 and float(terms["fine"]) < 1e-6


@pytest.mark.slow
def test_the_network_learns_the_synthetic_images(template, tmp_path):
    """Trained for 200 steps on 8 rendered crops, it segments their parts far better than chance (measured,
    width 12: 200 steps foreground IoU 0.84, part accuracy 0.54; 300 steps 0.93 and 0.78; about 13 s)."""
    p = load_params_dict({"synthetic": {"train_bodies": 2, "test_bodies": 1, "views": 3, "images": True,
                                        "corruption": {"occluder_prob": 0.0}}})
    write_synthetic_store(tmp_path / "dp.zarr", template, p.synthetic, crop=64, seed=0, device="cpu")
    root = open_densepose(tmp_path / "dp.zarr", template.hash)
    rgb = torch.from_numpy(root["rgb"][:8])
    decoded = [decode_iuv(x) for x in root["gt/iuv"][:8]]
    labels = torch.from_numpy(np.stack([d[0] for d in decoded]))
    uv = torch.from_numpy(np.nan_to_num(np.stack([d[1] for d in decoded])))
    t = chart_targets(labels, uv, torch.from_numpy(root["gt/occluder"][:8]))
    torch.manual_seed(0)
    net = ChartNet(width=12)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = normalise_images(rgb)
    first = None
    for step in range(200):
        loss, _ = chart_loss(net(x), t)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        out = net(x)
    pred = out.fine_segm.argmax(1) * (out.coarse_segm.argmax(1) > 0)
    part_accuracy = float((pred[t.fg] == t.labels[t.fg]).float().mean())
    fg_iou = float(((pred > 0) & t.fg).sum() / ((pred > 0) | t.fg).sum())
    assert loss.item() < 0.3 * first, (first, loss.item())
    assert fg_iou > 0.75 and part_accuracy > 0.4, (fg_iou, part_accuracy)


def test_a_checkpoint_round_trips_and_refuses_another_template_or_a_damaged_file(tmp_path):
    from pipeline.network.checkpoint import load_network, save_network

    torch.manual_seed(1)
    net = ChartNet(width=8).eval()
    save_network(tmp_path / "net.pt", net, 112, "t1", {"network": {"width": 8}}, step=5, metrics={"loss": 1.0})
    back, info = load_network(tmp_path / "net.pt", template_hash="t1")
    x = normalise_images(torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8))
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(net(x), back(x)))
    assert info["step"] == 5 and info["input_size"] == 112 and not back.training
    with pytest.raises(InputError, match="template 't1'"):
        load_network(tmp_path / "net.pt", template_hash="t2")
    (tmp_path / "bad.pt").write_bytes((tmp_path / "net.pt").read_bytes()[:100])
    with pytest.raises(InputError, match="bad.pt: not a correspondence network checkpoint"):
        load_network(tmp_path / "bad.pt")
