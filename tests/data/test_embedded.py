import numpy as np
import pytest
import torch

from lmoe_viz.config import RunConfig
from lmoe_viz.data import build_splits
from lmoe_viz.data import fashion, outliers
from lmoe_viz.data.outliers import load_photos, photo_crops
from lmoe_viz.errors import UserError


def test_digits_preset_splits():
    s = build_splits(RunConfig(preset="digits"))
    assert s.id_classes == [1, 2, 4, 6, 8, 9] and s.ood_classes == [0, 3, 5, 7]
    x, y, i = s.id_train[0]
    assert x.shape == (1, 8, 8) and 0 <= int(y) < 6
    assert set(s.ood_test.labels.tolist()) == {-1}
    assert len(s.id_train) + len(s.id_test) + len(s.ood_test) < 1797


def test_photo_crops_are_real_and_seeded():
    assert len(load_photos()) >= 5
    a, b = photo_crops(16, 8, 1, seed=3), photo_crops(16, 8, 1, seed=3)
    assert a.shape == (16, 1, 8, 8) and torch.equal(a, b)
    assert not torch.equal(a, photo_crops(16, 8, 1, seed=4))
    assert 0 <= float(a.min()) and float(a.max()) <= 1 and float(a.std()) > 0.01
    assert photo_crops(2, 12, 3, seed=0).shape == (2, 3, 12, 12)


def test_fashion_from_local_idx_files(fashion_dir):
    (x_tr, y_tr, x_te, y_te), where = fashion.load(fashion_dir, download=False)
    assert where == str(fashion_dir)
    assert x_tr.shape == (120, 1, 28, 28) and y_te.shape == (60,)
    s = build_splits(RunConfig(preset="fashion-mnist", data_root=str(fashion_dir), split=1))
    assert len(s.id_classes) == 6 and len(s.id_train) == 72 and len(s.ood_test) == 24


def test_fashion_missing_and_corrupt(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion, "DEBIAN_DIR", tmp_path / "nowhere")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))        # no earlier download either
    with pytest.raises(UserError, match="Fashion-MNIST not found under --data-root .*empty"):
        fashion.load(tmp_path / "empty", download=False)
    with pytest.raises(UserError, match="Fashion-MNIST not found in .*nowhere, .*home/.cache/"
                                        "lmoe_viz/FashionMNIST/raw; pass --data-root"):
        fashion.load(None, download=False)
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(UserError, match="not a readable idx file"):
        fashion.read_idx(bad)


def test_read_idx_roundtrip(tmp_path):
    from fakes import write_idx
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", arr)
    assert np.array_equal(fashion.read_idx(tmp_path / "a.gz"), arr)


def test_outlier_crops_are_cached(monkeypatch):
    a = outliers.photo_crops(7, 12, 1, seed=5)
    monkeypatch.setattr(outliers, "_draw_crops", lambda *a: pytest.fail("crops drawn again"))
    assert torch.equal(outliers.photo_crops(7, 12, 1, seed=5), a)
    monkeypatch.setenv("LMOE_VIZ_CACHE", "off")
    with pytest.raises(pytest.fail.Exception):
        outliers.photo_crops(7, 12, 1, seed=5)
