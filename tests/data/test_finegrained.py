"""The paper presets' loader on our layout DATA_ROOT/<preset>/{train,val,test}.txt.

The trees are miniature releases in the real formats (tests/fakes.py) turned into info
files by ``build-info``; WebVision is the fake with real WNIDs. Expected values come from
the info files and from MixOE's formulas written out here, not from the loader.
"""
import re
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

import fakes
from lmoe_viz.config import RunConfig
from lmoe_viz.data import build_splits
from lmoe_viz.data.build_info import build_info
from lmoe_viz.data.finegrained import load_rgb, read_info, transforms_for
from lmoe_viz.data.webvision import excluded_wnids, list_outliers, mixoe_groups
from lmoe_viz.errors import UserError

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
RELEASES = {"bird": fakes.nabirds, "aircraft": fakes.aircraft, "butterfly": fakes.butterfly,
            "car": fakes.cars_devkit}
PARTS = ("id_train", "id_val", "id_test", "ood_test")


def make_tree(root, *names):
    """Official releases of ``names`` under root, our info files built, WebVision beside."""
    for name in names:
        RELEASES[name](root)
        build_info(name, root)
    fakes.webvision(root)
    return root


def cfg(root, preset, **kw):
    return RunConfig(preset=preset, data_root=str(root), **kw)


def info(root, preset, split):
    """(absolute path, label) of one info file, parsed here (label = last field)."""
    out = []
    for line in (root / preset / f"{split}.txt").read_text(encoding="utf-8").splitlines():
        rel, label = line.rsplit(" ", 1)
        out.append((root / preset / rel, int(label)))
    return out


def all_labels(root, preset):
    return {p: lab for s in ("train", "val", "test") for p, lab in info(root, preset, s)}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """bird, aircraft and butterfly; the tests using it only read it."""
    return make_tree(tmp_path_factory.mktemp("tree"), "bird", "aircraft", "butterfly")


# ---------------------------------------------------------------- read_info
def test_read_info_path_with_space_bad_utf8_and_bad_label(tmp_path):
    f = tmp_path / "x" / "train.txt"
    f.parent.mkdir()
    f.write_text("images/a b/1.jpg 3\nimages/c.jpg 0\n\n")
    assert read_info(f) == [("images/a b/1.jpg", 3), ("images/c.jpg", 0)]
    f.write_bytes(b"\xff\xfe bad utf-8")
    with pytest.raises(UserError,
                       match=r"cannot read info file .*train\.txt \(UnicodeDecodeError\)"):
        read_info(f)
    f.write_text("images/c.jpg zero\n")
    with pytest.raises(UserError, match=r"train\.txt:1: expected '<path> <integer label>', "
                                        r"got 'images/c\.jpg zero'"):
        read_info(f)


def test_read_info_missing_file_names_the_fix(tmp_path):
    with pytest.raises(UserError, match=r"info file .*bird/val\.txt not found; run `lmoe-viz "
                                        r"data import-mixoe --preset bird"):
        read_info(tmp_path / "bird" / "val.txt")


# ---------------------------------------------------------------- splits and parts
@pytest.mark.parametrize("split", [0, 1, 2])
def test_aircraft_classes_are_mixoes_draw(tree, split):
    """The held-out classes of MixOE's splits 0-2 of aircraft, written out (what
    RandomState(split).choice(range(100), 90, replace=False) leaves out), so a change of
    our draw or of numpy's stream fails here."""
    held_out = {0: [9, 21, 36, 44, 47, 64, 67, 83, 87, 96], 1: [1, 5, 9, 12, 16, 37, 64, 72, 75, 79],
                2: [7, 15, 22, 34, 40, 43, 49, 72, 75, 82]}[split]
    s = build_splits(cfg(tree, "aircraft", split=split))
    assert s.ood_classes == held_out
    assert s.id_classes == sorted(set(range(100)) - set(held_out))


def test_aircraft_parts_follow_the_info_files(tree):
    s = build_splits(cfg(tree, "aircraft", split=1))
    ids = set(s.id_classes)
    rank = {c: i for i, c in enumerate(sorted(ids))}
    for part, split, keep in (("id_train", "train", True), ("id_val", "val", True),
                              ("id_test", "test", True), ("ood_test", "test", False)):
        rows = [(p, lab) for p, lab in info(tree, "aircraft", split) if (lab in ids) == keep]
        ds = getattr(s, part)
        assert ds is not None and len(ds) == len(rows) > 0, part
        assert ds.paths == [p for p, _ in rows], part
        assert ds.labels == ([rank[lab] for _, lab in rows] if keep else [-1] * len(rows)), part
    # val.txt is present and its ID part holds only ID classes
    val_labels = [lab for _, lab in info(tree, "aircraft", "val")]
    assert {s.id_classes[y] for y in s.id_val.labels} <= ids
    assert len(s.id_val) == sum(lab in ids for lab in val_labels) < len(val_labels)


def test_images_are_448_by_default_and_image_size_scales(tree):
    s = build_splits(cfg(tree, "aircraft"))
    for part in (*PARTS, "aux"):
        x, _, _ = getattr(s, part)[0]
        assert tuple(x.shape) == (3, 448, 448), part
    s = build_splits(cfg(tree, "aircraft", image_size=96))
    for part in (*PARTS, "aux"):
        x, _, _ = getattr(s, part)[0]
        assert tuple(x.shape) == (3, 96, 96), part


# ---------------------------------------------------------------- transforms
def wide_image(seed=0):
    rng = np.random.RandomState(seed)
    return Image.fromarray((rng.rand(768, 1024, 3) * 255).astype(np.uint8))


def test_test_transform_is_mixoes():
    img = wide_image()
    expected = T.Compose([T.Resize((512, 512)), T.CenterCrop(448), T.ToTensor(),
                          T.Normalize(MEAN, STD)])(img)
    got = transforms_for(448, train=False)(img)
    assert got.shape == (3, 448, 448) and torch.equal(got, expected)


def test_train_transform_is_mixoes_under_the_same_seed():
    img = wide_image(1)
    mixoe = T.Compose([T.Resize((512, 512)), T.RandomCrop(448), T.RandomHorizontalFlip(),
                       T.ColorJitter(brightness=32 / 255, saturation=0.5), T.ToTensor(),
                       T.Normalize(MEAN, STD)])
    ours = transforms_for(448, train=True)
    outs = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        expected = mixoe(img)
        torch.manual_seed(seed)
        got = ours(img)
        assert torch.equal(got, expected), seed
        outs.append(got)
    assert not torch.equal(outs[0], outs[1])          # it is random


def test_test_crop_keeps_seven_eighths_of_a_wide_image():
    """Resize((512, 512)) then CenterCrop(448): 448/512 = 87.5% of the width (and height)
    is kept whatever the aspect ratio; a shorter-side resize would keep far less width."""
    h, w = 768, 1024
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = np.round(np.arange(w) / (w - 1) * 255)[None, :]     # red: x position
    arr[..., 1] = np.round(np.arange(h) / (h - 1) * 255)[:, None]     # green: y position
    x = transforms_for(448, train=False)(Image.fromarray(arr))
    x = x * torch.tensor(STD)[:, None, None] + torch.tensor(MEAN)[:, None, None]
    row, col = x[0, 224], x[1, :, 224]
    kept_w = float(row[-1] - row[0]) * 448 / 447     # centre-to-centre span -> full width
    kept_h = float(col[-1] - col[0]) * 448 / 447
    assert kept_w == pytest.approx(448 / 512, abs=0.01)
    assert kept_h == pytest.approx(448 / 512, abs=0.01)
    assert float(row[0]) == pytest.approx(32 / 512, abs=0.01)    # the crop is centred


# ---------------------------------------------------------------- MixOE's quirks
BUTTERFLY_200 = "200.Genus200_species200"


def test_butterfly_faithful_keeps_the_empty_class_and_drops_label_200(tree):
    labels = all_labels(tree, "butterfly")
    assert min(labels.values()) == 1 and max(labels.values()) == 200
    with pytest.warns(UserWarning, match=r"ID class\(es\) \[0\] of butterfly have no training "
                                         r"image.*--correct-quirks"):
        s = build_splits(cfg(tree, "butterfly", split=0))
    assert 0 in s.id_classes                # split 0 draws class 0 as ID: the empty class
    assert 200 not in s.ood_classes and 200 not in s.id_classes
    assert sorted(s.id_classes + s.ood_classes) == list(range(200))
    for part in PARTS:                      # label 200 is in neither the ID nor the OOD sets
        assert not any(BUTTERFLY_200 in str(p) for p in getattr(s, part).paths), part
    n200 = sum(lab == 200 for lab in labels.values())
    assert n200 > 0 and s.info["dropped_labels"] == n200
    for p, y in zip(s.id_train.paths, s.id_train.labels):   # labels used as written
        assert s.id_classes[y] == labels[p]
    assert 0 not in {s.id_classes[y] for y in s.id_train.labels}
    test_rows = info(tree, "butterfly", "test")
    assert len(s.id_test) + len(s.ood_test) == sum(lab != 200 for _, lab in test_rows)


def test_butterfly_corrected_shifts_labels_to_0_199_without_warning(tree):
    labels = all_labels(tree, "butterfly")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = build_splits(cfg(tree, "butterfly", split=0, faithful=False))
    assert sorted(s.id_classes + s.ood_classes) == list(range(200))
    assert sorted(set(s.id_train.labels)) == list(range(150))       # no empty ID class
    for p, y in zip(s.id_train.paths + s.id_test.paths, s.id_train.labels + s.id_test.labels):
        assert s.id_classes[y] == labels[p] - 1
    for p in s.ood_test.paths:
        assert labels[p] - 1 in s.ood_classes
    test_rows = info(tree, "butterfly", "test")
    assert len(s.id_test) + len(s.ood_test) == len(test_rows)
    assert any(BUTTERFLY_200 in str(p) for p in s.id_test.paths + s.ood_test.paths)
    assert s.info["dropped_labels"] == 0


def test_bird_faithful_uses_labels_below_255(tree):
    labels = all_labels(tree, "bird")
    high = sum(lab >= 255 for lab in labels.values())
    assert high > 0 and max(labels.values()) == 256           # 257 fake classes
    s = build_splits(cfg(tree, "bird"))
    assert s.info["dropped_labels"] == high
    assert sorted(s.id_classes + s.ood_classes) == list(range(255))
    assert s.id_classes == np.sort(np.random.RandomState(0).choice(range(255), 200,
                                                                   replace=False)).tolist()
    for part in PARTS:
        assert all(labels[p] < 255 for p in getattr(s, part).paths), part
    test_rows = info(tree, "bird", "test")
    assert len(s.id_test) + len(s.ood_test) == sum(lab < 255 for _, lab in test_rows)


def test_bird_corrected_uses_every_class_at_200_to_55(tree):
    s = build_splits(cfg(tree, "bird", faithful=False))
    # 257 classes in MixOE's 200:55 ratio: round(257 * 200 / 255) = round(201.57) = 202 ID
    assert (len(s.id_classes), len(s.ood_classes)) == (202, 55)
    assert s.id_classes == np.sort(np.random.RandomState(0).choice(range(257), 202,
                                                                   replace=False)).tolist()
    assert s.info["dropped_labels"] == 0
    assert len(s.id_test) + len(s.ood_test) == len(info(tree, "bird", "test"))


# ---------------------------------------------------------------- WebVision by WNID
def expected_outliers(wv, drop):
    """Files of the query folders whose synset's WNID is not in ``drop``, read from the
    WebVision info files here: google first, then flickr, folders and files sorted."""
    wnids = [line.split()[0] for line in (wv / "info" / "synsets.txt").read_text().splitlines()]
    qmap = dict(map(int, line.split())
                for line in (wv / "info" / "queries_synsets_map.txt").read_text().splitlines())
    keep = sorted(q for q, syn in qmap.items() if wnids[syn - 1] not in drop)
    return [f for src in ("google", "flickr") for q in keep
            for f in sorted((wv / src / f"q{q:04d}").iterdir())]


def queries_of(wv, wnid):
    wnids = [line.split()[0] for line in (wv / "info" / "synsets.txt").read_text().splitlines()]
    syn = wnids.index(wnid) + 1
    return [f"q{int(q):04d}" for q, s in (line.split() for line in
            (wv / "info" / "queries_synsets_map.txt").read_text().splitlines()) if int(s) == syn]


def test_webvision_mixoe_drops_mixoes_wnids_and_keeps_warplane(tmp_path):
    wv = fakes.webvision(tmp_path)
    paths, summary = list_outliers(wv, "mixoe")
    assert list(paths) == expected_outliers(wv, fakes.EXCLUDED_BY_MIXOE)
    assert len(paths) == 4 * 2 * 6          # 4 kept concepts x 2 queries x 6 images
    folders = {p.parent.name for p in paths}
    for wnid in fakes.EXCLUDED_BY_MIXOE:
        assert not folders & set(queries_of(wv, wnid)), wnid
    assert set(queries_of(wv, "n04552348")) <= folders          # warplane is kept
    assert (summary["concepts_kept"], summary["concepts_excluded"]) == (4, 5)
    assert summary["aux_images"] == 48 and summary["aux_exclude"] == "mixoe"


def test_webvision_none_keeps_every_concept(tmp_path):
    wv = fakes.webvision(tmp_path)
    paths, summary = list_outliers(wv, "none")
    assert list(paths) == expected_outliers(wv, set()) and len(paths) == 9 * 2 * 6
    assert summary["concepts_excluded"] == 0


def test_webvision_exclusion_file_of_wnids(tmp_path):
    wv = fakes.webvision(tmp_path)
    f = tmp_path / "exclude.txt"
    f.write_text("# my list\nn01440764   # tench\n\nn04552348 n03028079\n")
    paths, summary = list_outliers(wv, str(f))
    assert list(paths) == expected_outliers(wv, {"n01440764", "n04552348", "n03028079"})
    assert set(queries_of(wv, "n01530575")) <= {p.parent.name for p in paths}   # brambling back
    assert (summary["concepts_kept"], summary["concepts_excluded"]) == (6, 3)


def test_mixoes_exclusion_list():
    ex = excluded_wnids("mixoe")
    assert len(ex) == 223
    assert {"n01530575", "n02782093"} <= ex and "n04552348" not in ex
    assert fakes.EXCLUDED_BY_MIXOE <= ex
    assert not (set(fakes.WEBVISION_WNIDS) - fakes.EXCLUDED_BY_MIXOE) & ex
    assert {g: len(w) for g, w in mixoe_groups().items()} == {
        "dog": 120, "bird": 52, "car": 42, "butterfly": 6, "aircraft": 3}
    assert excluded_wnids("none") == frozenset()


def test_webvision_errors(tmp_path):
    wv = fakes.webvision(tmp_path)
    bad = tmp_path / "bad.txt"
    bad.write_text("n01440764\nn0144 tench\n")
    with pytest.raises(UserError, match=re.escape(str(bad)) + r": 'n0144' is not a WordNet id"):
        list_outliers(wv, str(bad))
    with pytest.raises(UserError, match=r"--aux-exclude 'cats' is neither mixoe, none nor a file"):
        list_outliers(wv, "cats")
    with pytest.raises(UserError, match=r"WebVision folder .*nope not found"):
        list_outliers(tmp_path / "nope")
    synsets = wv / "info" / "synsets.txt"
    text = synsets.read_text()
    synsets.write_text("tench\nbrambling\n")
    with pytest.raises(UserError, match=re.escape(str(synsets)) + " does not list WNIDs"):
        list_outliers(wv)
    synsets.write_text(text)
    (wv / "google" / "q0099").mkdir()
    with pytest.raises(UserError, match=r"query folder .*google/q0099 has no entry"):
        list_outliers(wv)
    (wv / "google" / "q0099").rmdir()
    qmap = wv / "info" / "queries_synsets_map.txt"
    qmap.unlink()
    with pytest.raises(UserError,
                       match=r"WebVision file .*info/queries_synsets_map\.txt is missing"):
        list_outliers(wv)


def test_build_splits_passes_the_exclusion_and_the_aux_root(tmp_path):
    make_tree(tmp_path, "aircraft")
    s = build_splits(cfg(tmp_path, "aircraft", aux_exclude="none"))
    assert len(s.aux) == 108 and s.info["aux_exclude"] == "none"
    assert list(s.aux.paths) == expected_outliers(tmp_path / "webvision", set())
    (tmp_path / "webvision").rename(tmp_path / "wv elsewhere")
    s = build_splits(cfg(tmp_path, "aircraft"))     # WebVision is listed on first use
    assert len(s.id_train) > 0 and s.describe()["aux"] is None
    with pytest.raises(UserError, match=r"WebVision folder .*webvision not found"):
        len(s.aux)
    s = build_splits(cfg(tmp_path, "aircraft", aux_root=str(tmp_path / "wv elsewhere")))
    assert len(s.aux) == 48 and s.info["aux_root"] == str(tmp_path / "wv elsewhere")


# ---------------------------------------------------------------- corrupt images, bad trees
def test_corrupt_id_image_is_fatal_and_corrupt_outlier_skipped(tmp_path):
    make_tree(tmp_path, "aircraft")
    s = build_splits(cfg(tmp_path, "aircraft", image_size=64))
    bad_id = s.id_train.paths[0]
    bad_id.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(UserError, match=re.escape(str(bad_id)) + " is corrupt or unreadable"):
        s.id_train[0]
    bad_aux = s.aux.paths[0]
    bad_aux.write_bytes(b"garbage")
    with pytest.warns(UserWarning,
                      match="skipped unreadable outlier image " + re.escape(str(bad_aux))):
        x, y, _ = s.aux[0]
    assert tuple(x.shape) == (3, 64, 64) and y == -1 and s.aux.skipped == 1


def test_wrong_layout_paths_missing_under_the_dataset_folder(tmp_path):
    make_tree(tmp_path, "butterfly")
    ds = tmp_path / "butterfly"
    for split in ("train", "val", "test"):      # MixOE's paths, without our images_small/
        f = ds / f"{split}.txt"
        f.write_text(f.read_text().replace("images_small/", ""))
    first = read_info(ds / "train.txt")[0][0]
    with pytest.raises(UserError, match=re.escape(f"train.txt: 1 of 1 images missing under {ds} "
                                                  f"(first: {first})")):
        build_splits(cfg(tmp_path, "butterfly", faithful=False))


def test_bad_trees(tmp_path):
    with pytest.raises(UserError, match=r"preset 'car' needs --data-root DIR"):
        build_splits(RunConfig(preset="car"))
    with pytest.raises(UserError, match=r"dataset folder .*nowhere/car not found"):
        build_splits(cfg(tmp_path / "nowhere", "car"))
    with pytest.raises(UserError, match=r"dataset folder .*car not found"):
        build_splits(cfg(tmp_path, "car"))
    make_tree(tmp_path, "car")
    ds = tmp_path / "car"
    train = (ds / "train.txt").read_text()
    (ds / "train.txt").write_text(train + "cars_train/00001.jpg 250\n")
    with pytest.raises(UserError, match=r"train\.txt: label 250 of 'cars_train/00001\.jpg' is "
                                        r"outside 0\.\.195"):
        build_splits(cfg(tmp_path, "car"))
    # an ID class without training images
    first_id = int(np.sort(np.random.RandomState(0).choice(range(196), 150, replace=False))[0])
    lines = [x for x in train.splitlines() if not x.endswith(f" {first_id}")]
    assert len(lines) < len(train.splitlines())
    (ds / "train.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=rf"ID class\(es\) \[{first_id}\] of car have no training "
                                        r"image; fix the info files"):
        build_splits(cfg(tmp_path, "car", split=0))
    (ds / "train.txt").write_text(train)
    (ds / "val.txt").unlink()
    with pytest.raises(UserError, match=r"info file .*car/val\.txt not found"):
        build_splits(cfg(tmp_path, "car"))


@pytest.mark.parametrize("preset,faithful,label,span", [
    ("butterfly", True, 201, "0..200"), ("butterfly", False, 0, "1..200"),
    ("butterfly", False, 201, "1..200"), ("bird", True, 600, "0..554")])
def test_only_mixoes_quirk_labels_are_dropped(tmp_path, preset, faithful, label, span):
    """Faithful mode drops bird 255..554 and butterfly 200 only; other labels are errors."""
    make_tree(tmp_path, preset)
    train = tmp_path / preset / "train.txt"
    first = train.read_text().splitlines()[0].rsplit(" ", 1)[0]
    train.write_text(train.read_text() + f"{first} {label}\n")
    with pytest.raises(UserError, match=rf"label {label} of .* is outside {re.escape(span)}"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build_splits(cfg(tmp_path, preset, faithful=faithful))


def test_draft_decode_scales_down_in_the_dct_and_stays_close(tmp_path):
    from PIL import Image
    rng = np.random.RandomState(0)
    img = np.clip(rng.rand(60, 70, 3).repeat(20, 0).repeat(20, 1) * 255, 0, 255).astype(np.uint8)
    path = tmp_path / "big.jpg"
    Image.fromarray(img).save(path, quality=92)              # 1400 x 1200
    full, draft = load_rgb(path, "pil"), load_rgb(path, "draft", 512)
    assert full.size == (1400, 1200) and draft.size == (700, 600)   # 1/2: both sides stay >= 512
    assert load_rgb(path, "draft", 700).size == (1400, 1200)        # 1/2 would go below 700
    t = transforms_for(448, train=False)
    diff = (t(full) - t(draft)).abs()
    assert float(diff.mean()) < 0.05


def test_tensor_decode_path_matches_mixoes_transforms_closely(tmp_path):
    """--decode tensor: torchvision's decoder and the same transforms on uint8 tensors; the
    test transform lands within a few hundredths (normalised units) of MixOE's PIL path,
    and the train transform draws the same kind of crop (shape, flip, jitter)."""
    from PIL import Image
    rng = np.random.RandomState(1)
    img = np.clip(rng.rand(30, 40, 3).repeat(20, 0).repeat(20, 1) * 255, 0, 255).astype(np.uint8)
    path = tmp_path / "photo.jpg"
    Image.fromarray(img).save(path, quality=92)                   # 800 x 600
    t = load_rgb(path, "tensor")
    assert t.dtype == torch.uint8 and tuple(t.shape) == (3, 600, 800)
    pil = transforms_for(64, train=False)(load_rgb(path, "pil"))
    ten = transforms_for(64, train=False, tensor=True)(t)
    assert ten.shape == pil.shape == (3, 64, 64) and ten.dtype == torch.float32
    assert float((ten - pil).abs().mean()) < 0.05
    torch.manual_seed(0)
    assert transforms_for(64, train=True, tensor=True)(t).shape == (3, 64, 64)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(OSError):
        load_rgb(bad, "tensor")
