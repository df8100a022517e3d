"""Photo-like RGB crops of the synthetic source (pipeline/densepose/synthetic/images.py): every body pixel's
colour comes from the surface point its exact IUV names, outputs are deterministic, occluders agree
with the DensePose-like output."""

import numpy as np
import pytest

from pipeline.core.config import load_params_dict
from pipeline.densepose.store import open_densepose
from pipeline.densepose.synthetic.images import (BOTTOM, OUTFIT_STREAM, Outfit, SKIN, TOP, albedo, background, lambert,
                                                 sample_outfit, to_srgb8)
from pipeline.densepose.synthetic.source import write_synthetic_store
from pipeline.template.file import decode_iuv


def _outfit(**kw) -> Outfit:
    colours = np.zeros((4, 2, 3))
    colours[SKIN] = (0.7, 0.5, 0.4)
    colours[TOP] = ((0.9, 0.1, 0.1), (0.1, 0.1, 0.9))
    colours[BOTTOM] = ((0.1, 0.8, 0.1), (0.8, 0.8, 0.1))
    colours[3] = (0.05, 0.05, 0.05)
    args = dict(colours=colours, pattern=np.array([0, 1, 0, 0]), frequency=np.array([4.0, 4.0, 4.0, 4.0]),
                short_sleeves=False, shorts=False)
    return Outfit(**{**args, **kw})


def test_albedo_follows_part_region_and_chart_pattern():
    labels = np.array([[0, 23, 2, 2], [20, 20, 8, 12]])  # background, head, torso, torso / lower arm, legs
    uv = np.zeros((2, 2, 4))
    uv[1, 0, 3] = 0.3  # V = 0.3: the second stripe of 4 a chart (floor(0.3 * 4) = 1)
    a = albedo(labels, uv, _outfit())
    assert np.all(a[0, 0] == 0)
    assert np.allclose(a[0, 1], (0.7, 0.5, 0.4))  # head: skin
    assert np.allclose(a[0, 2], (0.9, 0.1, 0.1)) and np.allclose(a[0, 3], (0.1, 0.1, 0.9))  # striped top
    assert np.allclose(a[1, 0], (0.9, 0.1, 0.1))  # lower arm in a long sleeve
    assert np.allclose(a[1, 2], (0.1, 0.8, 0.1)) and np.allclose(a[1, 3], (0.1, 0.8, 0.1))  # legs: trousers
    short = albedo(labels, uv, _outfit(short_sleeves=True, shorts=True))
    assert np.allclose(short[1, 0], (0.7, 0.5, 0.4)) and np.allclose(short[1, 3], (0.7, 0.5, 0.4))
    assert np.allclose(short[1, 2], (0.1, 0.8, 0.1))  # upper leg still in the shorts


def test_lambert_is_ambient_in_shadow_and_full_facing_the_light():
    colour = np.full((1, 2, 3), 0.5, np.float32)
    normals = np.array([[[0, 0, -1], [0, 0, 1]]], np.float32)  # towards the camera / away from it
    out = lambert(colour, normals, np.array([0, 0, -1.0]), 0.3)
    assert np.allclose(out[0, 0], 0.5) and np.allclose(out[0, 1], 0.15)


def test_backgrounds_and_outfits_are_seeded():
    a, b = background(np.random.default_rng(1), 32), background(np.random.default_rng(1), 32)
    assert a.shape == (32, 32, 3) and np.array_equal(a, b) and 0 <= a.min() and a.max() <= 1
    assert not np.array_equal(a, background(np.random.default_rng(2), 32))
    o1, o2 = sample_outfit(np.random.default_rng(5)), sample_outfit(np.random.default_rng(5))
    assert np.array_equal(o1.colours, o2.colours) and o1.pattern[SKIN] == 0


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = c / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


@pytest.fixture(scope="module")
def rendered(template, tmp_path_factory):
    """12 instances with images, no occluders and no sensor noise, so every body pixel is shaded albedo."""
    p = load_params_dict({"synthetic": {"train_bodies": 2, "test_bodies": 1, "views": 4, "batch": 3, "images": True,
                                        "image_noise": 0.0, "corruption": {"occluder_prob": 0.0}}})
    path = tmp_path_factory.mktemp("images") / "dp.zarr"
    write_synthetic_store(path, template, p.synthetic, crop=64, seed=0, device="cpu")
    return p, open_densepose(path, template.hash)


def _shaded_albedo(rgb: np.ndarray, iuv: np.ndarray, body: int, ambient_min: float) -> tuple[np.ndarray, np.ndarray]:
    """Body pixels (S, S) bool whose albedo is bright enough to test, and those among them whose linear RGB is
    the albedo of the point their IUV names times one shading factor in [ambient_min, 1]."""
    labels, uv = decode_iuv(iuv)
    a = albedo(labels, np.nan_to_num(uv), sample_outfit(np.random.default_rng([0, OUTFIT_STREAM, body])))
    tested = (labels > 0) & (a.min(axis=-1) > 0.05)  # dark albedo: the ratio is all quantisation
    ratio = _srgb_to_linear(rgb.astype(np.float64)) / np.maximum(a, 1e-6)
    spread, mean = ratio.max(axis=-1) - ratio.min(axis=-1), ratio.mean(axis=-1)
    return tested, tested & (spread < 0.06) & (mean > ambient_min - 0.03) & (mean < 1.03)


def test_a_body_pixel_is_the_shaded_albedo_of_the_point_its_iuv_names(rendered):
    """Linear RGB / albedo is one shading factor for the three channels, within [ambient_min, 1]: the colour
    comes from the part and chart coordinates of the exact IUV, lit by one light."""
    p, root = rendered
    rgb, iuv, body = root["rgb"][:], root["gt/iuv"][:], root["gt/body"][:]
    tested = consistent = 0
    for i in range(len(rgb)):
        t, ok = _shaded_albedo(rgb[i], iuv[i], int(body[i]), p.synthetic.ambient_min)
        tested, consistent = tested + int(t.sum()), consistent + int(ok.sum())
    # the rest: pattern borders, where the quantised U, V of gt/iuv falls in the neighbouring stripe
    # (measured: 99.6 %; with another body's outfit 3 %)
    assert tested > 5000 and consistent / tested > 0.97, consistent / tested


def test_images_are_deterministic_whatever_the_batching(rendered, template, tmp_path):
    p, root = rendered
    q = load_params_dict({"synthetic": {**{k: getattr(p.synthetic, k) for k in ("train_bodies", "test_bodies",
                                                                                 "views", "images", "image_noise")},
                                        "batch": 1, "corruption": {"occluder_prob": 0.0}}})
    write_synthetic_store(tmp_path / "b1.zarr", template, q.synthetic, crop=64, seed=0, device="cpu")
    other = open_densepose(tmp_path / "b1.zarr", template.hash)
    assert np.array_equal(other["rgb"][:], root["rgb"][:])
    assert other["rgb"].dtype == np.uint8 and root["rgb"].shape == (12, 64, 64, 3)


def test_occluders_show_in_the_image_where_densepose_output_loses_the_body(template, tmp_path):
    p = load_params_dict({"synthetic": {"train_bodies": 2, "test_bodies": 1, "views": 2, "images": True,
                                        "corruption": {"occluder_prob": 1.0}}})
    write_synthetic_store(tmp_path / "dp.zarr", template, p.synthetic, crop=48, seed=3, device="cpu")
    root = open_densepose(tmp_path / "dp.zarr", template.hash)
    occ, labels, rgb = root["gt/occluder"][:], root["labels"][:], root["rgb"][:]
    iuv, body = root["gt/iuv"][:], root["gt/body"][:]
    assert occ.any(axis=(1, 2)).sum() >= 4
    assert np.isin(labels[occ], (0, 255)).all()  # an occluder makes DensePose output background or missing
    hidden = shown = 0
    for i in range(len(rgb)):  # where the occluder covers the body, the image shows the occluder, not the body
        tested, ok = _shaded_albedo(rgb[i], iuv[i], int(body[i]), p.synthetic.ambient_min)
        hidden += int((ok & occ[i]).sum())
        shown += int((tested & occ[i]).sum())
    assert shown > 100 and hidden / shown < 0.2, (hidden, shown)


def test_without_images_the_store_has_no_rgb(template, tmp_path):
    p = load_params_dict({"synthetic": {"train_bodies": 1, "test_bodies": 1, "views": 1}})
    write_synthetic_store(tmp_path / "dp.zarr", template, p.synthetic, crop=16, seed=0, device="cpu")
    root = open_densepose(tmp_path / "dp.zarr", template.hash)
    assert "rgb" not in root and "occluder" not in root["gt"]


def test_srgb_encoding_of_linear_values():
    out = to_srgb8(np.array([[[0.0, 0.5, 1.0]]]), np.random.default_rng(0), 0.0)
    assert out.dtype == np.uint8 and out.tolist() == [[[0, 188, 255]]]
