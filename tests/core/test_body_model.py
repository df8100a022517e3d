"""Anny's model data built the same whoever builds them first (pipeline/core/body_model.py): this project's own
cache per CPU dispatch, one thread, Anny's own cache setting left as it was."""

from __future__ import annotations

import torch

from pipeline.core.dispatch import PINNED
from pipeline.core.body_model import anny_cache_dir, anny_model, one_thread


def test_the_cache_has_one_folder_per_cpu_dispatch(tmp_path):
    pinned = anny_cache_dir({"XDG_CACHE_HOME": str(tmp_path), **PINNED})
    native = anny_cache_dir({"XDG_CACHE_HOME": str(tmp_path)})
    assert pinned == tmp_path / "densepose3d" / "anny" / "pinned"
    assert native.parent == pinned.parent and native.name.startswith("native-")
    assert anny_cache_dir({"HOME": "/nowhere"}).parent.parent.name == "densepose3d"


def test_one_thread_inside_the_block_and_the_callers_count_after():
    from threadpoolctl import threadpool_info

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with one_thread():
            assert torch.get_num_threads() == 1
            assert all(pool["num_threads"] == 1 for pool in threadpool_info())
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_anny_model_uses_this_projects_cache_and_leaves_annys_setting(template):
    from anny import paths

    before = paths.get_anny_cache_path()
    model = anny_model(template.topology)  # built (or loaded) by the session's template already
    assert paths.get_anny_cache_path() == before
    assert any(anny_cache_dir().glob("v*/build_compact_model_data_*.safetensors"))
    assert int(model.template_vertices.shape[0]) == template.n_vertices
