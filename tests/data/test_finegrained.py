"""A small MixOE-format tree read through the real loaders, WebVision exclusion included."""
import warnings

import numpy as np
import pytest
from PIL import Image

from lmoe_viz.config import RunConfig
from lmoe_viz.data import build_splits
from lmoe_viz.data.build_info import build_info
from lmoe_viz.data.finegrained import read_info
from lmoe_viz.data.webvision import EXCLUDED_CONCEPTS, list_outliers
from lmoe_viz.errors import UserError


def _img(path, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((20, 24, 3), value % 256, np.uint8)).save(path)


def make_webvision(root, n_queries=6):
    """Queries 1..n map to synsets; query 1 -> 'albatross' (146, a bird), 2 -> dog (200)."""
    wv = root / "webvision"
    (wv / "info").mkdir(parents=True)
    (wv / "info" / "synsets.txt").write_text("".join(f"n{i:08d} name {i}\n" for i in range(1000)))
    synsets = {1: 147, 2: 201, 3: 500, 4: 600, 5: 700, 6: 800}   # 1-based synset ids
    (wv / "info" / "queries_synsets_map.txt").write_text(
        "".join(f"{q} {synsets[q]}\n" for q in range(1, n_queries + 1)))
    for q in range(1, n_queries + 1):
        for src in ("google", "flickr"):
            _img(wv / src / f"q{q:04d}" / "a.jpg", 10 * q)
    return wv


def make_tree(root, name, num_classes, per_class=2, label_base=0, space_in=0):
    ds = root / name
    for split in ("train", "test"):
        lines = []
        for c in range(num_classes):
            for k in range(per_class):
                folder = f"class {c}" if (c == space_in and k == 0) else f"c{c}"
                rel = f"images/{folder}/{split}{k}.jpg"
                _img(ds / rel, c)
                lines.append(f"{rel} {c + label_base}\n")
        (ds / f"{split}.txt").write_text("".join(lines))
    make_webvision(root)
    return ds


def test_read_info_path_with_space(tmp_path):
    f = tmp_path / "x" / "train.txt"
    f.parent.mkdir()
    f.write_text("images/a b/1.jpg 3\nimages/c.jpg 0\n\n")
    assert read_info(f) == [("images/a b/1.jpg", 3), ("images/c.jpg", 0)]
    f.write_bytes(b"\xff\xfe bad utf-8")
    with pytest.raises(UserError, match="cannot read info file"):
        read_info(f)
    f.write_text("images/c.jpg zero\n")
    with pytest.raises(UserError, match=r"train.txt:1: expected '<path> <integer label>'"):
        read_info(f)


def test_aircraft_tree_through_real_loaders(tmp_path):
    make_tree(tmp_path, "aircraft", 100, per_class=1, space_in=5)
    s = build_splits(RunConfig(preset="aircraft", data_root=str(tmp_path), split=2))
    expected = np.sort(np.random.RandomState(2).choice(range(100), 90, replace=False))
    assert s.id_classes == expected.tolist() and len(s.ood_classes) == 10
    assert len(s.id_train) == 90 and len(s.ood_test) == 10
    x, y, _ = s.id_train[0]
    assert tuple(x.shape) == (3, 448, 448) and y == 0
    # the path with a space is read
    assert any(" " in str(p) for p in s.id_train.paths + s.ood_test.paths)
    # WebVision: queries 1 (a bird) and 2 (a dog) are excluded, 4 queries x 2 sources kept
    assert len(s.aux) == 8 and s.info["queries_excluded"] == 2
    assert all("q0001" not in str(p) and "q0002" not in str(p) for p in s.aux.paths)


def test_webvision_exclusion_lists_are_imagenet_indices(tmp_path):
    assert 146 in EXCLUDED_CONCEPTS["birds"] and 323 in EXCLUDED_CONCEPTS["butterflies"]
    assert 404 in EXCLUDED_CONCEPTS["aircraft"] and 817 in EXCLUDED_CONCEPTS["cars"]
    assert len(EXCLUDED_CONCEPTS["dogs"]) == 118
    wv = make_webvision(tmp_path)
    paths, info = list_outliers(wv, groups=("cars",))
    assert len(paths) == 12 and info["queries_excluded"] == 0
    with pytest.raises(UserError, match="unknown WebVision exclusion group"):
        list_outliers(wv, groups=("cats",))
    with pytest.raises(UserError, match="WebVision folder .* not found"):
        list_outliers(tmp_path / "nope")


def test_butterfly_quirk_faithful_and_corrected(tmp_path):
    make_tree(tmp_path, "butterfly", 200, per_class=1, label_base=1)   # labels 1..200
    cfg = RunConfig(preset="butterfly", data_root=str(tmp_path), split=0)
    assert 0 in build_splits.__globals__["holdout_split"](150, 50, 0)  # class 0 drawn as ID
    with pytest.warns(UserWarning, match=r"ID class\(es\) \[0\].*--correct-quirks"):
        s = build_splits(cfg)
    assert 200 in s.ood_classes          # label 200 is never drawn: always OOD
    cfg.faithful = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = build_splits(cfg)
    assert len(s.id_train) == 150 and 200 not in s.ood_classes


def test_bird_quirk_255_of_555(tmp_path):
    make_tree(tmp_path, "bird", 300, per_class=1)
    s = build_splits(RunConfig(preset="bird", data_root=str(tmp_path)))
    assert len(s.id_classes) == 200 and s.info["dropped_labels"] == 2 * 45
    s = build_splits(RunConfig(preset="bird", data_root=str(tmp_path), faithful=False))
    assert len(s.id_classes) + len(s.ood_classes) == 300 and len(s.id_classes) == 235


def test_bad_trees(tmp_path):
    with pytest.raises(UserError, match="needs --data-root"):
        build_splits(RunConfig(preset="car"))
    with pytest.raises(UserError, match="dataset folder .*car not found"):
        build_splits(RunConfig(preset="car", data_root=str(tmp_path)))
    ds = make_tree(tmp_path, "car", 196, per_class=1)
    (ds / "train.txt").write_text((ds / "train.txt").read_text() + "images/c0/train0.jpg 250\n")
    with pytest.raises(UserError, match="label 250 .* outside 0..195"):
        build_splits(RunConfig(preset="car", data_root=str(tmp_path)))
    # an ID class without training images
    lines = [l for l in (ds / "train.txt").read_text().splitlines() if not l.endswith(" 1")]
    (ds / "train.txt").write_text("\n".join(l for l in lines if "250" not in l) + "\n")
    with pytest.raises(UserError, match=r"ID class\(es\) \[1\] of car have no training image"):
        build_splits(RunConfig(preset="car", data_root=str(tmp_path), split=0))


def test_corrupt_images_id_fatal_aux_skipped(tmp_path):
    make_tree(tmp_path, "aircraft", 100, per_class=1)
    s = build_splits(RunConfig(preset="aircraft", data_root=str(tmp_path)))
    s.id_train.paths[0].write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(UserError, match="corrupt or unreadable"):
        s.id_train[0]
    s.aux.paths[0].write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="skipped unreadable outlier image"):
        x, _, _ = s.aux[0]
    assert x.shape[0] == 3 and s.aux.skipped == 1


def test_build_info_nabirds_and_aircraft(tmp_path):
    nb = tmp_path / "bird"
    nb.mkdir()
    (nb / "images.txt").write_text("a 0001/x.jpg\nb 0002/y y.jpg\nc 0001/z.jpg\n")
    (nb / "image_class_labels.txt").write_text("a 817\nb 295\nc 817\n")
    (nb / "train_test_split.txt").write_text("a 1\nb 1\nc 0\n")
    build_info("bird", tmp_path)
    assert read_info(nb / "train.txt") == [("images/0001/x.jpg", 1), ("images/0002/y y.jpg", 0)]
    assert read_info(nb / "test.txt") == [("images/0001/z.jpg", 1)]
    ac = tmp_path / "aircraft" / "data"
    ac.mkdir(parents=True)
    (ac / "variants.txt").write_text("707-320\nA300B4\nCessna 172\n")
    for split, line in (("train", "1 Cessna 172"), ("val", "2 707-320"), ("test", "3 A300B4")):
        (ac / f"images_variant_{split}.txt").write_text(line + "\n")
    build_info("aircraft", tmp_path)
    assert read_info(tmp_path / "aircraft" / "train.txt") == [("data/images/1.jpg", 2)]
    assert read_info(tmp_path / "aircraft" / "test.txt") == [("data/images/3.jpg", 1)]
    with pytest.raises(UserError, match="official Butterfly200 metadata file"):
        (tmp_path / "butterfly").mkdir()
        build_info("butterfly", tmp_path)


def test_build_info_butterfly_and_cars(tmp_path):
    bf = tmp_path / "butterfly"
    bf.mkdir()
    for split in ("train", "val", "test"):
        (bf / f"Butterfly200_{split}_release.txt").write_text(f"001.A/{split}.jpg 1 1 1 1\n")
    build_info("butterfly", tmp_path)
    assert read_info(bf / "val.txt") == [("001.A/val.jpg", 1)]
    from scipy.io import savemat
    car = tmp_path / "car"
    car.mkdir()
    ann = np.zeros(2, dtype=[("relative_im_path", "O"), ("class", "O"), ("test", "O")])
    ann[0] = ("car_ims/000001.jpg", 1, 0)
    ann[1] = ("car_ims/000002.jpg", 196, 1)
    savemat(car / "cars_annos.mat", {"annotations": ann})
    build_info("car", tmp_path)
    assert read_info(car / "train.txt") == [("car_ims/000001.jpg", 0)]
    assert read_info(car / "test.txt") == [("car_ims/000002.jpg", 195)]
