"""DensePose-like corruption: off gives the exact data; each kind does what it says and only that."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline.core.config import CorruptionParams
from pipeline.core.errors import InputError
from pipeline.render.corruption import LR_TWIN, Crop, chart_mirror, corrupt, is_off, occluder_alpha
from pipeline.template.file import MISSING_LABEL, PART_NAMES

OFF = CorruptionParams(uv_noise=0.0, uv_noise_scale=0.0, embedding_noise=0.0, flip_prob=0.0, dropout_blobs=0.0,
                       dropout_radius=0.0, border_px=0, occluder_prob=0.0, occluder_size=0.0, occluder_soft=0.0,
                       occluder_missing=0.0, seam_px=0, mirror_prob=0.0)


def only(**kw) -> CorruptionParams:
    return dataclasses.replace(OFF, **kw)


@pytest.fixture
def crop():
    """A 64 x 64 crop: a disc of two parts (left half 3, right half 7), smooth U, V and embedding."""
    s, d = 64, 4
    r, c = np.mgrid[0:s, 0:s]
    mask = (r - 32) ** 2 + (c - 32) ** 2 < 24 ** 2
    labels = np.where(mask, np.where(c < 32, 3, 7), 0).astype(np.uint8)
    uv = np.stack([c / s, r / s]).astype(np.float32) * mask
    emb = (np.stack([np.sin(c / 9 + k) for k in range(d)]) * mask).astype(np.float16)
    return Crop(labels, uv, emb, mask, np.zeros((s, s), bool))


def _same(a: Crop, b: Crop) -> bool:
    return (np.array_equal(a.labels, b.labels) and np.array_equal(a.uv, b.uv, equal_nan=True)
            and (a.embedding is b.embedding is None or np.array_equal(a.embedding, b.embedding, equal_nan=True))
            and np.array_equal(a.mask, b.mask)
            and np.array_equal(a.occluder, b.occluder))


def test_off_gives_exact_data(crop):
    assert is_off(OFF) and not is_off(CorruptionParams())
    out = corrupt(crop, OFF, np.random.default_rng(0))
    assert _same(out, crop)


def test_corrupt_leaves_its_input_alone_and_is_deterministic(crop):
    before = corrupt(crop, OFF, np.random.default_rng(0))
    p = dataclasses.replace(CorruptionParams(occluder_prob=1.0), mirror_prob=0.0)  # every other default on
    a = corrupt(crop, p, np.random.default_rng(7))
    b = corrupt(crop, p, np.random.default_rng(7))
    assert _same(crop, before) and _same(a, b) and not _same(a, crop)


def test_uv_and_embedding_noise_touch_only_the_foreground(crop):
    out = corrupt(crop, only(uv_noise=0.05, embedding_noise=0.05), np.random.default_rng(1))
    assert np.array_equal(out.labels, crop.labels) and np.array_equal(out.mask, crop.mask)
    fg = crop.mask
    assert np.array_equal(out.uv[:, ~fg], crop.uv[:, ~fg])
    assert np.array_equal(out.embedding[:, ~fg], crop.embedding[:, ~fg])
    d = out.uv[:, fg] - crop.uv[:, fg]
    inner = (crop.uv[:, fg] > 0.2) & (crop.uv[:, fg] < 0.8)  # away from the clipping at 0 and 1
    assert 0.04 < d[inner].std() < 0.06 and abs(d[inner].mean()) < 0.01
    assert out.uv.min() >= 0 and out.uv.max() <= 1
    e = out.embedding[:, fg].astype(np.float32) - crop.embedding[:, fg].astype(np.float32)
    assert 0.02 < e.std() < 0.08


def test_label_flips_stay_on_part_borders_and_take_a_neighbours_part(crop):
    out = corrupt(crop, only(flip_prob=1.0), np.random.default_rng(2))
    changed = out.labels != crop.labels
    assert changed.any()
    rows, cols = np.nonzero(changed)
    assert (np.abs(cols - 32) <= 1).all()  # the 3 | 7 border is between columns 31 and 32
    assert set(np.unique(out.labels[changed])) <= {3, 7}
    assert np.array_equal(out.mask, crop.mask) and np.array_equal(out.uv, crop.uv)
    half = corrupt(crop, only(flip_prob=0.5), np.random.default_rng(2))
    assert 0 < (half.labels != crop.labels).sum() < changed.sum() + 10


def test_dropout_blobs_make_foreground_pixels_missing(crop):
    out = corrupt(crop, only(dropout_blobs=3.0, dropout_radius=0.1), np.random.default_rng(3))
    miss = out.labels == MISSING_LABEL
    assert miss.any() and not (miss & ~crop.mask).any()
    assert np.isnan(out.uv[:, miss]).all() and np.isnan(out.embedding[:, miss].astype(np.float32)).all()
    keep = ~miss
    assert np.array_equal(out.labels[keep], crop.labels[keep]) and np.array_equal(out.uv[:, keep], crop.uv[:, keep])


@pytest.mark.parametrize("seed", range(6))
def test_border_erodes_or_dilates_by_at_most_border_px(crop, seed):
    out = corrupt(crop, only(border_px=2), np.random.default_rng(seed))
    grown, shrunk = (out.mask & ~crop.mask).sum(), (crop.mask & ~out.mask).sum()
    assert grown == 0 or shrunk == 0
    radius_in = np.sqrt(out.mask.sum() / np.pi)
    assert abs(radius_in - np.sqrt(crop.mask.sum() / np.pi)) <= 2.5
    assert ((out.labels > 0) == out.mask).all()
    new = out.mask & ~crop.mask
    if new.any():  # dilated pixels copy a nearby foreground pixel: same part as their side of the disc
        cols = np.nonzero(new)[1]
        assert np.array_equal(out.labels[new], np.where(cols < 32, 3, 7))


def test_occluders_cover_the_body_with_soft_edges(crop):
    alpha = occluder_alpha(64, 30, 2.0, (32, 32), np.random.default_rng(0))
    assert alpha.max() > 0.99 and ((alpha > 0.05) & (alpha < 0.95)).any()  # a soft edge
    background = corrupt(crop, only(occluder_prob=1.0, occluder_size=0.5, occluder_soft=1.0, occluder_missing=0.0),
                         np.random.default_rng(4))
    occ = background.occluder
    assert occ.any() and (occ & crop.mask).any()
    assert not background.mask[occ].any() and (background.labels[occ] == 0).all()
    assert np.array_equal(background.labels[~occ], crop.labels[~occ])
    missing = corrupt(crop, only(occluder_prob=1.0, occluder_size=0.5, occluder_soft=1.0, occluder_missing=1.0),
                      np.random.default_rng(4))
    hidden = missing.occluder & crop.mask
    assert hidden.any() and (missing.labels[hidden] == MISSING_LABEL).all() and np.isnan(missing.uv[:, hidden]).all()
    assert np.array_equal(missing.mask, crop.mask)  # missing, not background
    never = corrupt(crop, only(occluder_prob=0.0, occluder_size=0.5), np.random.default_rng(4))
    assert _same(never, crop)


def _limb_crop(back: int, front: int, twin_part: int | None = None) -> Crop:
    """A 64 x 64 crop: a bar whose upper half is part ``back`` and lower half ``front`` (a limb seen from its
    side), plus, when given, a disc of part ``twin_part`` (the other side's limb) far from it."""
    s = 64
    r, c = np.mgrid[0:s, 0:s]
    bar = (c >= 8) & (c < 40) & (r >= 16) & (r < 48)
    labels = np.where(bar, np.where(r < 32, back, front), 0).astype(np.uint8)
    if twin_part is not None:
        labels[(r - 32) ** 2 + (c - 54) ** 2 < 36] = twin_part
    mask = labels > 0
    uv = (np.stack([(c % 32) / 32, (r % 32) / 32]) * mask).astype(np.float32)
    return Crop(labels, uv, None, mask, np.zeros((s, s), bool))


@pytest.mark.parametrize("seed", range(8))
def test_seam_moves_the_front_back_border_by_at_most_seam_px(seed):
    crop = _limb_crop(7, 9, twin_part=3)  # right upper leg back / front; a hand elsewhere
    out = corrupt(crop, only(seam_px=3), np.random.default_rng(seed))
    changed = out.labels != crop.labels
    assert np.array_equal(out.mask, crop.mask) and (out.labels[~changed] == crop.labels[~changed]).all()
    assert not (changed & ~np.isin(crop.labels, (7, 9))).any()  # only the segment's own pixels
    rows = np.nonzero(changed)[0]
    if len(rows):  # one side grew into the other by 1..3 rows; the new pixels copy the row next to the seam
        grown = set(np.unique(out.labels[changed]))
        assert len(grown) == 1
        assert (np.abs(rows + 0.5 - 32) <= 3).all()
        edge = 32 if grown == {9} else 31
        assert np.array_equal(out.uv[:, changed], crop.uv[:, np.full(len(rows), edge), np.nonzero(changed)[1]])


def test_seams_move_in_some_instances_and_not_others():
    crop = _limb_crop(7, 9)
    moved = [(corrupt(crop, only(seam_px=3), np.random.default_rng(k)).labels != crop.labels).any() for k in range(40)]
    assert 20 < sum(moved) < 40  # a shift of 0 is one of the four draws


def test_chart_mirror_of_the_template_maps_each_point_to_its_mirror_image(template):
    from scipy.spatial import cKDTree

    m = chart_mirror(template)
    names = [PART_NAMES[t - 1] for t in LR_TWIN[1:]]
    assert names[2] == "left hand" and names[22] == "head left" and LR_TWIN[1] == 1 and LR_TWIN[0] == 0
    v = template.vertices
    side = np.cross(template.up, template.forward)
    mirrored_vertex = cKDTree(v).query(v - 2 * np.outer(v @ side - (v @ side).mean(), side))[1]
    for p in range(1, 25):  # a chart point of part p, flipped on its axis, is its vertex's mirror on the twin
        k = np.flatnonzero(template.chart_part == p)
        uv = template.chart_uv[k].astype(np.float64).copy()
        if m.axis[p] < 2:  # 2: the twin's chart is the same
            uv[:, m.axis[p]] = 1.0 - uv[:, m.axis[p]]
        found = m.locator.vertices_of(int(LR_TWIN[p]), uv)
        assert np.mean(found == mirrored_vertex[template.chart_vertex[k]]) > 0.95, PART_NAMES[p - 1]


def test_chart_mirror_refuses_an_asymmetric_template(template):
    v = template.vertices.copy()
    v[v[:, 0] > 0, 0] *= 1.3  # one side wider
    with pytest.raises(InputError, match="not left/right symmetric"):
        chart_mirror(dataclasses.replace(template, vertices=v))


def test_mirror_patches_take_the_twin_part_and_the_mirrored_chart_point(template):
    m = chart_mirror(template)
    crop = _limb_crop(7, 9, twin_part=3)  # right upper leg, right hand
    with pytest.raises(ValueError, match="Mirror"):
        corrupt(crop, only(mirror_prob=1.0), np.random.default_rng(0))
    shares = []
    for seed in range(30):
        out = corrupt(crop, only(mirror_prob=1.0), np.random.default_rng(seed), m)
        changed = out.labels != crop.labels
        assert np.array_equal(out.mask, crop.mask)
        assert (out.labels[changed] == LR_TWIN[crop.labels[changed]]).all()
        for part in np.unique(crop.labels[changed]):
            at = changed & (crop.labels == part)
            k = m.axis[part]
            if k == 2:  # the twin's chart is the same (DensePose's limbs): U, V kept
                assert np.array_equal(out.uv[:, at], crop.uv[:, at])
                continue
            assert np.allclose(out.uv[k, at], 1.0 - crop.uv[k, at]) and np.array_equal(out.uv[1 - k, at],
                                                                                       crop.uv[1 - k, at])
        leg = np.isin(crop.labels, (7, 9))
        shares.append(changed[leg].mean())
        hand = crop.labels == 3
        assert changed[hand].any()  # every segment got its patch, none mirrored back by its twin's turn
    shares = np.array(shares)
    assert (shares > 0).all() and (shares < 0.1).mean() > 0.3 and shares.max() > 0.5  # mostly small, some large
    assert abs(shares.mean() - 0.25) < 0.1  # u**3 has mean 1/4
    never = corrupt(crop, only(mirror_prob=1e-9), np.random.default_rng(0), m)
    assert _same(never, crop)


def test_mirror_patches_give_the_embedding_of_the_mirror_point(template):
    m = chart_mirror(template)
    crop = _limb_crop(7, 9)
    d = template.embedding.shape[1]
    emb = np.zeros((d, 64, 64), np.float32)
    crop = Crop(crop.labels, crop.uv, emb, crop.mask, crop.occluder)
    out = corrupt(crop, only(mirror_prob=1.0), np.random.default_rng(3), m)
    changed = out.labels != crop.labels
    assert changed.any()
    vertex = m.locator.locate(out.labels[changed].astype(np.int64), out.uv[:, changed].T.astype(np.float64))
    assert np.allclose(out.embedding[:, changed], template.embedding[vertex].T)
