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
