"""The WebVision listing's cache (data/webvision.py): walked once per folder state, rebuilt
with a warning when unreadable."""
import os
from pathlib import Path

import pytest

import fakes
from lmoe_viz.data import webvision


def test_webvision_is_walked_once_per_folder_state(tmp_path, monkeypatch):
    wv = fakes.webvision(tmp_path)
    first, _ = webvision.list_outliers(wv, "none")
    walks = {"n": 0}
    real = webvision._walk

    def counting(*a):
        walks["n"] += 1
        return real(*a)
    monkeypatch.setattr(webvision, "_walk", counting)
    again, summary = webvision.list_outliers(wv, "none")
    assert walks["n"] == 0 and list(again) == list(first) and summary["aux_images"] == len(first)
    folder = first[0].parent
    fakes.put_jpeg(folder / "zz_new.jpg", 9)
    os.utime(folder, ns=(folder.stat().st_atime_ns, folder.stat().st_mtime_ns + 10**9))
    grown, _ = webvision.list_outliers(wv, "none")
    assert walks["n"] == 1 and len(grown) == len(first) + 1 and folder / "zz_new.jpg" in list(grown)


def test_an_unreadable_cache_is_rebuilt_with_a_warning(tmp_path):
    wv = fakes.webvision(tmp_path)
    first, _ = webvision.list_outliers(wv, "mixoe")
    for f in (Path(os.environ["LMOE_VIZ_CACHE"]) / "webvision").glob("*.npy"):
        f.write_bytes(b"\x93NUMPY truncated")
    with pytest.warns(UserWarning, match="unreadable"):
        again, _ = webvision.list_outliers(wv, "mixoe")
    assert list(again) == list(first)


def test_the_outlier_pools_content_not_its_path_names_a_run(tmp_path):
    """--aux-root enters the run's identity by the pool's listing (train.run_identity): the
    same images under another path give the same name, one image more another; without
    --aux-root nothing is added (names of runs made before stay)."""
    import shutil

    from lmoe_viz.config import RunConfig
    from lmoe_viz.train import run_identity
    wv = fakes.webvision(tmp_path / "a")
    moved = shutil.copytree(wv, tmp_path / "b" / "webvision")
    ident = {p: run_identity(RunConfig(preset="aircraft", method="mixoe", aux_root=str(p)))
             for p in (wv, moved)}
    assert ident[wv] == ident[moved] and "aux_listing" in ident[wv]
    assert "aux_listing" not in run_identity(RunConfig(preset="aircraft", method="mixoe"))
    assert "aux_listing" not in run_identity(RunConfig(preset="aircraft", method="ce", aux_root=str(wv)))
    folder = webvision.list_outliers(moved, "mixoe")[0][0].parent     # a kept concept's folder
    fakes.put_jpeg(folder / "zz_new.jpg", 9)
    os.utime(folder, ns=(folder.stat().st_atime_ns, folder.stat().st_mtime_ns + 10**9))
    assert run_identity(RunConfig(preset="aircraft", method="mixoe", aux_root=str(moved))) != ident[wv]


def test_an_old_config_with_extra_aux_root_loads_into_the_typed_field():
    from lmoe_viz.config import RunConfig
    from lmoe_viz.errors import UserError
    old = {**RunConfig(method="mixoe").to_dict(), "extra": {"aux_root": "/wv"}}
    old.pop("aux_root")
    cfg = RunConfig.from_dict(old)
    assert cfg.aux_root == "/wv"
    assert RunConfig.from_dict({**old, "extra": {}}).aux_root is None
    with pytest.raises(UserError, match="extras"):
        RunConfig.from_dict({**old, "extra": {"other": 1}})
