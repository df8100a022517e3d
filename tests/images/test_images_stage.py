"""Stage ``images`` (pipeline/images/write.py) and its read side (pipeline/images/store.py): the network's own
bodies, rendered with photos into a densepose store."""

import numpy as np

from pipeline.core.config import load_params_dict
from pipeline.densepose.store import open_densepose
from pipeline.densepose.synthetic import write_synthetic_store
from pipeline.images.store import open_images
from pipeline.images.write import write_images_store


def test_the_networks_bodies_are_not_the_synthetic_sources(template, tmp_path):
    params = load_params_dict({"network": {"train_bodies": 3, "test_bodies": 1, "views": 2, "crop": 32},
                               "common": {"device": "cpu"}})
    summary = write_images_store(params, template, tmp_path / "images.zarr")
    assert summary.instances == 8 and summary.train == 6 and summary.test == 2
    synthetic = load_params_dict({"synthetic": {"train_bodies": 3, "test_bodies": 1, "views": 2}}).synthetic
    write_synthetic_store(tmp_path / "syn.zarr", template, synthetic, crop=32, seed=0, device="cpu")
    ours, theirs = open_images(tmp_path / "images.zarr", template.hash), open_densepose(tmp_path / "syn.zarr",
                                                                                       template.hash)
    assert ours.attrs["source"] == "images" and "rgb" in ours and ours["rgb"].shape[1:] == (32, 32, 3)
    assert not np.allclose(ours["gt/joints"][:], theirs["gt/joints"][:])
