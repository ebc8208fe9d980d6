"""``import-mixoe``: MixOE's info files (as MixOE ships them, tests/fakes.py) to our layout.

MixOE's paths are relative to its image folders (utils/dataset.py): bird
``DATA/bird/images``, aircraft ``DATA/aircraft/images``, butterfly
``DATA/butterfly/images_small``, car ``DATA/car``; ours are relative to ``DATA/<preset>``.
"""
import re

import pytest

import fakes
from lmoe_viz.cli import main
from lmoe_viz.data.mixoe_info import import_mixoe
from lmoe_viz.errors import UserError

SPLITS = ("train", "val", "test")
#: MixOE's image folders relative to DATA/<dataset> (written out, not read from lmoe_viz)
PREFIX = {"bird": "images/", "aircraft": "images/", "butterfly": "images_small/", "car": ""}


def mixoe_rows(path):
    """MixOE's parse of one info file: whitespace-separated path and label, no final newline."""
    return [(rel, int(lab)) for rel, lab in
            (line.split() for line in path.read_text().split("\n") if line)]


def our_rows(path):
    return [(rel, int(lab)) for rel, lab in
            (line.rsplit(" ", 1) for line in path.read_text().splitlines())]


def make(tmp_path, preset, num_classes=6, label_base=0):
    info, root = tmp_path / "MixOE" / "info", tmp_path / "data"
    fakes.mixoe_tree(root, info, preset, num_classes, label_base=label_base)
    return info, root, root / preset


def written(ds):
    return [s for s in SPLITS if (ds / f"{s}.txt").exists()]


@pytest.mark.parametrize("preset,num_classes,label_base", [
    ("bird", 12, 0), ("aircraft", 100, 0), ("butterfly", 200, 1), ("car", 196, 0)])
def test_import_prefixes_paths_and_keeps_labels(tmp_path, preset, num_classes, label_base):
    info, root, ds = make(tmp_path, preset, num_classes, label_base)
    assert not (info / preset / "test.txt").read_text().endswith("\n")   # as MixOE ships them
    paths = import_mixoe(preset, info, root)
    assert paths == [ds / f"{s}.txt" for s in SPLITS]
    for s in SPLITS:
        theirs, ours = mixoe_rows(info / preset / f"{s}.txt"), our_rows(ds / f"{s}.txt")
        assert len(ours) == len(theirs) > 0, s
        assert ours == [(PREFIX[preset] + rel, lab) for rel, lab in theirs], s
        assert all((ds / rel).is_file() for rel, _ in ours), s
    labels = {lab for s in SPLITS for _, lab in our_rows(ds / f"{s}.txt")}
    assert labels == set(range(label_base, label_base + num_classes))


def test_car_paths_are_mixoes_unchanged(tmp_path):
    info, root, ds = make(tmp_path, "car")
    import_mixoe("car", info, root)
    assert our_rows(ds / "test.txt") == mixoe_rows(info / "car" / "test.txt")
    assert our_rows(ds / "train.txt")[0][0].startswith("cars_train/")


def test_info_dir_may_be_the_dataset_subfolder(tmp_path):
    info, root, ds = make(tmp_path, "butterfly", label_base=1)
    import_mixoe("butterfly", info, root)
    first = {s: (ds / f"{s}.txt").read_bytes() for s in SPLITS}
    for s in SPLITS:
        (ds / f"{s}.txt").unlink()
    import_mixoe("butterfly", info / "butterfly", root)
    assert {s: (ds / f"{s}.txt").read_bytes() for s in SPLITS} == first


def test_aircraft_images_in_the_official_data_images_folder(tmp_path):
    info, root, ds = make(tmp_path, "aircraft")
    (ds / "data").mkdir()
    (ds / "images").rename(ds / "data" / "images")
    import_mixoe("aircraft", info, root)
    for s in SPLITS:
        theirs, ours = mixoe_rows(info / "aircraft" / f"{s}.txt"), our_rows(ds / f"{s}.txt")
        assert ours == [("data/images/" + rel, lab) for rel, lab in theirs]
        assert all((ds / rel).is_file() for rel, _ in ours)


def test_missing_images_write_nothing(tmp_path):
    info, root, ds = make(tmp_path, "bird")
    train = mixoe_rows(info / "bird" / "train.txt")
    for rel, _ in train[:2]:
        (ds / "images" / rel).unlink()
    with pytest.raises(UserError, match=re.escape(
            f"train: 2 of {len(train)} images missing under {ds} "
            f"(first: images/{train[0][0]}, images/{train[1][0]})")):
        import_mixoe("bird", info, root)
    assert written(ds) == []


def test_label_outside_mixoes_range(tmp_path):
    info, root, ds = make(tmp_path, "bird")
    f = info / "bird" / "val.txt"
    f.write_text(f.read_text() + "\n0000/00.jpg 600")
    with pytest.raises(UserError, match=re.escape(str(f)) + r": label 600 of '0000/00\.jpg' is "
                                        r"outside MixOE's bird range 0\.\.554"):
        import_mixoe("bird", info, root)
    assert written(ds) == []
    info, root, ds = make(tmp_path / "b", "butterfly", label_base=0)      # 0-based: not MixOE's
    with pytest.raises(UserError, match=r"label 0 of '0000/00\.jpg' is outside MixOE's "
                                        r"butterfly range 1\.\.200"):
        import_mixoe("butterfly", info, root)
    assert written(ds) == []


def test_missing_info_folder(tmp_path):
    info, root, ds = make(tmp_path, "car")
    with pytest.raises(UserError, match=r"MixOE info files for car not found in .*nope/car or "
                                        r".*nope \(train\.txt, val\.txt, test\.txt\)"):
        import_mixoe("car", tmp_path / "nope", root)
    (info / "car" / "val.txt").unlink()
    with pytest.raises(UserError, match=r"MixOE info files for car not found"):
        import_mixoe("car", info, root)
    assert written(ds) == []


def test_images_small_expected_for_butterfly(tmp_path):
    info, root, ds = make(tmp_path, "butterfly", label_base=1)
    (ds / "images_small").rename(ds / "images")
    with pytest.raises(UserError, match=r"image folder .*butterfly/images_small not found; "
                                        r"MixOE's butterfly paths are relative to it"):
        import_mixoe("butterfly", info, root)
    assert written(ds) == []


def test_cli_import_mixoe(tmp_path, capsys):
    info, root, ds = make(tmp_path, "car")
    argv = ["data", "import-mixoe", "--preset", "car", "--data-root", str(root)]
    assert main(argv + ["--info-dir", str(info)]) == 0
    out = capsys.readouterr().out
    for s in SPLITS:
        n = len(mixoe_rows(info / "car" / f"{s}.txt"))
        assert f"wrote {ds / f'{s}.txt'} ({n} images)" in out
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lmoe-viz: error: import-mixoe needs --info-dir")
