"""``build-info`` on each official release layout (tests/fakes.py writes them as released).

For each layout the expected rows are derived here from the release's own files (or from
how the fake numbers its images), and the validation cut from MixOE's rule written out:
the first floor(n / 10) of ``numpy.random.RandomState(0).permutation(n)`` go to val.
"""
import re

import numpy as np
import pytest

import fakes
from lmoe_viz.data.build_info import build_info, val_cut
from lmoe_viz.errors import UserError

SPLITS = ("train", "val", "test")


def read_rows(ds):
    out = {}
    for s in SPLITS:
        lines = (ds / f"{s}.txt").read_text(encoding="utf-8").splitlines()
        out[s] = [(rel, int(lab)) for rel, lab in (line.rsplit(" ", 1) for line in lines)]
    return out


def file_bytes(ds):
    return {s: (ds / f"{s}.txt").read_bytes() for s in SPLITS}


def expected_cut(rows):
    n = len(rows)
    val_idx = set(np.random.RandomState(0).permutation(n)[: n // 10].tolist())
    return ([r for i, r in enumerate(rows) if i not in val_idx],
            [r for i, r in enumerate(rows) if i in val_idx])


def check_built(ds, official_train, official_test, labels):
    """The built files: a seeded 10% val cut of ``official_train``, ``official_test`` as
    test, every image present, train/val/test disjoint, labels in ``labels``."""
    out = read_rows(ds)
    assert len(out["val"]) == len(official_train) // 10 > 0
    assert (out["train"], out["val"]) == expected_cut(official_train)
    assert (out["train"], out["val"]) == val_cut(official_train)
    assert out["test"] == official_test
    paths = {s: [rel for rel, _ in out[s]] for s in SPLITS}
    assert not set(paths["train"]) & set(paths["val"])
    assert not (set(paths["train"]) | set(paths["val"])) & set(paths["test"])
    for s in SPLITS:
        assert all((ds / rel).is_file() for rel in paths[s]), s
        assert {lab for _, lab in out[s]} <= set(labels), s
    first = file_bytes(ds)                       # deterministic: a second run, same files
    build_info(ds.name, ds.parent)
    assert file_bytes(ds) == first
    return out


def test_nabirds(tmp_path):
    ds = fakes.nabirds(tmp_path, num_classes=257, train_per_class=3, test_per_class=1)
    assert build_info("bird", tmp_path) == [ds / f"{s}.txt" for s in SPLITS]
    def pairs(name):
        return dict(line.split(" ", 1) for line in (ds / name).read_text().splitlines())
    images, classes, is_train = (pairs("images.txt"), pairs("image_class_labels.txt"),
                                 pairs("train_test_split.txt"))
    rank = {c: i for i, c in enumerate(sorted({int(c) for c in classes.values()}))}
    rows = {"1": [], "0": []}
    for uid in sorted(images, key=images.get):           # image path order
        rows[is_train[uid]].append((f"images/{images[uid]}", rank[int(classes[uid])]))
    out = check_built(ds, rows["1"], rows["0"], range(257))
    assert len(rows["1"]) == 771 and len(out["val"]) == 77
    for rel, lab in out["train"] + out["val"] + out["test"]:   # class ids 295, 297, ...
        assert lab == (int(rel.split("/")[1]) - 295) // 2


def test_aircraft_2013b(tmp_path):
    ds = fakes.aircraft(tmp_path, num_classes=100, trainval_per_class=4, test_per_class=1)
    build_info("aircraft", tmp_path)
    variants = (ds / "data" / "variants.txt").read_text().splitlines()
    assert variants[5] == "Cessna 172" and variants[7] == "F/A-18"

    def rows(name):
        lines = (ds / "data" / f"images_variant_{name}.txt").read_text().splitlines()
        return [(f"data/images/{img}.jpg", variants.index(v))
                for img, v in (line.split(" ", 1) for line in lines)]
    out = check_built(ds, rows("trainval"), rows("test"), range(100))
    assert len(out["val"]) == 400 // 10 and len(out["test"]) == 100
    labels = {lab for s in SPLITS for _, lab in out[s]}
    assert {5, 7} <= labels and labels == set(range(100))
    # without the trainval file, train + val (the same images, same order) are read
    before = file_bytes(ds)
    (ds / "data" / "images_variant_trainval.txt").unlink()
    build_info("aircraft", tmp_path)
    assert file_bytes(ds) == before


def test_butterfly200(tmp_path):
    ds = fakes.butterfly(tmp_path, num_classes=200, train_per_class=3, test_per_class=1)
    build_info("butterfly", tmp_path)

    def rows(split):
        lines = (ds / f"Butterfly200_{split}_release.txt").read_text().splitlines()
        return [(f"images_small/{f[0]}", int(f[1])) for f in (line.split() for line in lines)]
    out = check_built(ds, rows("train"), rows("val") + rows("test"), range(1, 201))
    assert len(out["train"]) + len(out["val"]) == 600 and len(out["val"]) == 60
    assert len(out["test"]) == 400
    labels = {lab for s in SPLITS for _, lab in out[s]}
    assert min(labels) == 1 and max(labels) == 200           # as released, 1-based
    for rel, lab in out["test"]:                              # folder NNN. is the species
        assert lab == int(rel.split("/")[1].split(".")[0])


def test_stanford_cars_devkit(tmp_path):
    ds = fakes.cars_devkit(tmp_path, num_classes=196, train_per_class=3, test_per_class=1)
    build_info("car", tmp_path)
    train = [(f"cars_train/{n:05d}.jpg", (n - 1) // 3) for n in range(1, 589)]
    test = [(f"cars_test/{n:05d}.jpg", n - 1) for n in range(1, 197)]
    out = check_built(ds, train, test, range(196))
    assert len(out["val"]) == 58
    # the test labels may sit beside devkit/ as well
    before = file_bytes(ds)
    (ds / "devkit" / "cars_test_annos_withlabels.mat").rename(ds / "cars_test_annos_withlabels.mat")
    build_info("car", tmp_path)
    assert file_bytes(ds) == before


def test_stanford_cars_all_in_one(tmp_path):
    ds = fakes.cars_allinone(tmp_path, num_classes=196, train_per_class=3, test_per_class=1)
    build_info("car", tmp_path)
    rows = [(f"car_ims/{n:06d}.jpg", (n - 1) // 4, (n - 1) % 4 == 3) for n in range(1, 785)]
    out = check_built(ds, [(r, c) for r, c, t in rows if not t],
                      [(r, c) for r, c, t in rows if t], range(196))
    assert len(out["val"]) == 58 and len(out["test"]) == 196
    assert {lab for _, lab in out["test"]} == set(range(196))


# ---------------------------------------------------------------- errors
def test_cars_without_either_release(tmp_path):
    (tmp_path / "car").mkdir()
    with pytest.raises(UserError, match=r"Stanford Cars metadata not found in .*car: expected the "
                                        r"all-in-one release \(cars_annos\.mat, car_ims/\) or the "
                                        r"devkit release \(devkit/cars_train_annos\.mat"):
        build_info("car", tmp_path)


def test_cars_devkit_without_test_labels(tmp_path):
    ds = fakes.cars_devkit(tmp_path, num_classes=4)
    (ds / "devkit" / "cars_test_annos_withlabels.mat").unlink()
    with pytest.raises(UserError, match=r"devkit release found in .*car but no "
                                        r"cars_test_annos_withlabels\.mat"):
        build_info("car", tmp_path)
    assert not (ds / "train.txt").exists()


def test_cars_mat_that_is_not_an_annotation_file(tmp_path):
    ds = fakes.cars_allinone(tmp_path, num_classes=4)
    from scipy.io import savemat
    savemat(ds / "cars_annos.mat", {"class_names": np.array(["a", "b"], dtype=object)})
    with pytest.raises(UserError, match=r"cars_annos\.mat is not a Stanford Cars annotation "
                                        r"file \(KeyError\)"):
        build_info("car", tmp_path)
    for junk in (b"x" * 300, b"", b"<html><body>Not Found</body></html>\n"):
        (ds / "cars_annos.mat").write_bytes(junk)       # truncated, empty, an error page
        with pytest.raises(UserError, match=r"cars_annos\.mat is not a Stanford Cars annotation"):
            build_info("car", tmp_path)


def test_missing_image_writes_nothing(tmp_path):
    ds = fakes.aircraft(tmp_path, num_classes=100, trainval_per_class=4, test_per_class=1)
    (ds / "train.txt").write_text("sentinel 0\n")
    first_test = (ds / "data" / "images_variant_test.txt").read_text().split(" ", 1)[0]
    (ds / "data" / "images" / f"{first_test}.jpg").unlink()
    with pytest.raises(UserError, match=re.escape(
            f"aircraft release test: 1 of 100 images missing under {ds} "
            f"(first: data/images/{first_test}.jpg)")):
        build_info("aircraft", tmp_path)
    assert (ds / "train.txt").read_text() == "sentinel 0\n"
    assert not (ds / "val.txt").exists() and not (ds / "test.txt").exists()


def test_butterfly_release_line_with_wrong_field_count(tmp_path):
    ds = fakes.butterfly(tmp_path, num_classes=3)
    f = ds / "Butterfly200_val_release.txt"
    lines = f.read_text().splitlines()
    lines[1] = " ".join(lines[1].split()[:4])
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=re.escape(str(f)) + r":2: expected 5 fields .* got 4"):
        build_info("butterfly", tmp_path)


def test_unknown_aircraft_variant(tmp_path):
    ds = fakes.aircraft(tmp_path, num_classes=3)
    f = ds / "data" / "images_variant_test.txt"
    f.write_text(f.read_text() + "1234567 Boeing 999\n")
    with pytest.raises(UserError, match=r"variant 'Boeing 999' of .*images_variant_test\.txt is "
                                        r"not in .*data/variants\.txt"):
        build_info("aircraft", tmp_path)


def test_nabirds_missing_or_inconsistent_metadata(tmp_path):
    ds = fakes.nabirds(tmp_path, num_classes=3)
    labels = (ds / "image_class_labels.txt").read_text()
    (ds / "image_class_labels.txt").write_text("\n".join(labels.splitlines()[1:]) + "\n")
    with pytest.raises(UserError, match=r"NABirds image id .* of images\.txt has no class or "
                                        r"split line"):
        build_info("bird", tmp_path)
    (ds / "train_test_split.txt").unlink()
    with pytest.raises(UserError, match=r"official NABirds metadata file "
                                        r".*train_test_split\.txt not found"):
        build_info("bird", tmp_path)


def test_preset_and_folder_errors(tmp_path):
    with pytest.raises(UserError, match=r"knows the paper presets bird, aircraft, butterfly, car, cub, "
                                        r"not 'digits'"):
        build_info("digits", tmp_path)
    with pytest.raises(UserError, match="needs --data-root DIR"):
        build_info("bird", None)
    with pytest.raises(UserError, match=r"dataset folder .*bird not found"):
        build_info("bird", tmp_path)
    (tmp_path / "butterfly").mkdir()
    with pytest.raises(UserError, match=r"official Butterfly200 metadata file "
                                        r".*Butterfly200_train_release\.txt not found"):
        build_info("butterfly", tmp_path)


def test_aircraft_images_in_mixoes_folder(tmp_path):
    """Images moved to aircraft/images/ (MixOE's layout): build-info writes those paths."""
    ds = fakes.aircraft(tmp_path)
    (ds / "data" / "images").rename(ds / "images")
    build_info("aircraft", tmp_path)
    rels = [line.rsplit(" ", 1)[0] for line in (ds / "train.txt").read_text().splitlines()]
    assert rels and all(r.startswith("images/") and (ds / r).is_file() for r in rels)


def test_cars_both_releases_the_one_whose_images_are_there(tmp_path):
    ds = fakes.cars_devkit(tmp_path, num_classes=4)
    from scipy.io import savemat
    savemat(ds / "cars_annos.mat", {"annotations": np.zeros((1, 0))})   # no car_ims/ here
    build_info("car", tmp_path)
    assert (ds / "test.txt").read_text().startswith("cars_test/")
    ds2 = fakes.cars_allinone(tmp_path / "b", num_classes=4)
    (ds2 / "devkit").mkdir()
    (ds2 / "devkit" / "cars_train_annos.mat").write_bytes(b"")
    build_info("car", tmp_path / "b")
    assert (ds2 / "test.txt").read_text().startswith("car_ims/")


def test_cars_annotations_without_a_field(tmp_path):
    ds = fakes.cars_allinone(tmp_path, num_classes=2)
    from scipy.io import savemat
    arr = np.zeros((1, 1), dtype=[("relative_im_path", "O"), ("test", "O")])
    arr[0, 0] = (np.array(["car_ims/000001.jpg"]), np.array([[0]], np.uint8))
    savemat(ds / "cars_annos.mat", {"annotations": arr})
    with pytest.raises(UserError, match=r"cars_annos\.mat has no 'class' field"):
        build_info("car", tmp_path)


@pytest.mark.parametrize("flat", [False, True])
def test_cub_200_2011(tmp_path, flat):
    """CUB's release files read as released (the CUB_200_2011/ folder the tarball makes, or
    its content moved up into cub/); labels class id - 1 (SSB's indices)."""
    base = fakes.cub(tmp_path, num_classes=200, train_per_class=2, test_per_class=1)
    ds = tmp_path / "cub"
    prefix = "CUB_200_2011/"
    if flat:
        for p in list(base.iterdir()):
            p.rename(ds / p.name)
        base.rmdir()
        base, prefix = ds, ""

    def pairs(name):
        return [line.split(" ", 1) for line in (base / name).read_text().splitlines()]
    images, classes, is_train = dict(pairs("images.txt")), dict(pairs("image_class_labels.txt")), \
        dict(pairs("train_test_split.txt"))
    rows = {"1": [], "0": []}
    for i in sorted(images, key=int):
        rows[is_train[i]].append((f"{prefix}images/{images[i]}", int(classes[i]) - 1))
    assert build_info("cub", tmp_path) == [ds / f"{s}.txt" for s in SPLITS]
    out = check_built(ds, rows["1"], rows["0"], range(200))
    assert len(rows["1"]) == 400 and len(out["test"]) == 200
    assert out["train"][0][0].startswith(f"{prefix}images/001.Black_footed_Albatross/")
    (base / "classes.txt").write_text("1 001.A\n")
    with pytest.raises(UserError, match="lists 1 classes, CUB-200-2011 has 200"):
        build_info("cub", tmp_path)
