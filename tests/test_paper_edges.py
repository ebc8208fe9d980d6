"""Paper-preset edges: no WebVision needed until outliers are, too few outliers, empty val."""
import json
from pathlib import Path

import numpy as np
import pytest

import fakes
from lmoe_viz.cli import main
from lmoe_viz.data.build_info import build_info

SMALL = ["--image-size", "32", "--epochs", "1", "--limit-batches", "1", "--batch-size", "4",
         "--num-workers", "0", "--no-progress", "--weights", "none"]


@pytest.fixture(scope="module")
def no_webvision(tmp_path_factory):
    root = tmp_path_factory.mktemp("nowv")
    fakes.aircraft(root)
    build_info("aircraft", root)
    return root


def test_pretrain_and_holdout_without_webvision(no_webvision, tmp_path, capsys):
    root = str(no_webvision)
    assert main(["pretrain", "--preset", "aircraft", "--data-root", root, "--out",
                 str(tmp_path / "pre"), *SMALL]) == 0
    m = json.loads((tmp_path / "pre" / "metrics.json").read_text())
    assert m["finished"] and m["aux"] is None          # WebVision never listed
    ckpt = str(tmp_path / "pre" / "checkpoint.pt")
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", ckpt, "--data-root", root]) == 0
    assert json.loads(capsys.readouterr().out)["n_ood"] == m["ood_test"]
    assert main(["evaluate", "--checkpoint", ckpt, "--data-root", root, "--protocol", "paper"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "WebVision folder" in err and "--aux-root" in err
    # the paper protocol with the WebVision folder given to evaluate
    fakes.webvision(tmp_path)
    assert main(["evaluate", "--checkpoint", ckpt, "--data-root", root, "--protocol", "paper",
                 "--aux-root", str(tmp_path / "webvision")]) == 0
    capsys.readouterr()
    # another WebVision folder, another pool: its own cache entry, never the first's logits
    other = fakes.webvision(tmp_path / "other")
    for q in sorted(other.glob("google/q*"))[::2]:
        for f in q.glob("*.jpg"):
            fakes.put_jpeg(f, 200, size=(30, 22))          # other pixels ...
        fakes.put_jpeg(q / "extra.jpg", 201, size=(30, 22))   # ... and one more image a query
    cache = Path(ckpt).parent / "logits"
    before = set(cache.glob("*.npz"))
    assert main(["evaluate", "--checkpoint", ckpt, "--data-root", root, "--protocol", "paper",
                 "--aux-root", str(other)]) == 0
    capsys.readouterr()
    new = set(cache.glob("*.npz")) - before
    assert len(new) == 1
    with np.load(new.pop()) as b, np.load(sorted(before, key=lambda f: f.stat().st_mtime)[-1]) as a:
        assert not (np.array_equal(a["paper_ood/ids"], b["paper_ood/ids"])
                    and np.array_equal(a["paper_ood/logits"], b["paper_ood/logits"]))


def test_too_few_outliers_for_the_oe_batch(no_webvision, tmp_path, capsys):
    root = str(no_webvision)
    assert main(["pretrain", "--preset", "aircraft", "--data-root", root, "--out",
                 str(tmp_path / "pre"), *SMALL]) == 0
    fakes.webvision(tmp_path)                           # 48 images kept after exclusion
    args = ["finetune", "--preset", "aircraft", "--data-root", root, "--aux-root",
            str(tmp_path / "webvision"), "--init", str(tmp_path / "pre" / "checkpoint.pt"),
            "--method", "oe", *SMALL[:-2]]
    capsys.readouterr()
    assert main([*args, "--batch-size", "32", "--out", str(tmp_path / "oe")]) == 2
    err = capsys.readouterr().err
    assert "holds 48 images, fewer than one outlier batch (32 x aux_ratio 2" in err
    assert not (tmp_path / "oe" / "checkpoint.pt").exists()


def test_best_val_with_no_id_val_image(tmp_path, capsys):
    fakes.aircraft(tmp_path)
    build_info("aircraft", tmp_path)
    (tmp_path / "aircraft" / "val.txt").write_text("")
    code = main(["pretrain", "--preset", "aircraft", "--data-root", str(tmp_path), "--out",
                 str(tmp_path / "pre"), *SMALL])
    err = capsys.readouterr().err
    assert code == 2 and "--select best-val needs validation images" in err


def test_coarse_with_only_some_of_mixoes_datasets_warns_naming_the_absent(tmp_path):
    """The row says `coarse` either way: a pool short of MixOE's datasets is said aloud."""
    from types import SimpleNamespace

    import pytest

    from lmoe_viz.data.protocols import coarse_ood
    (tmp_path / "car").mkdir()
    (tmp_path / "car" / "test.txt").write_text("a/1.jpg 0\na/2.jpg 1\n")
    id_test = type("IdTest", (), {"file_transform": None, "__len__": lambda self: 1})()
    splits = SimpleNamespace(id_test=id_test)
    cfg = SimpleNamespace(preset="bird", data_root=str(tmp_path))
    with pytest.warns(UserWarning, match="butterfly, aircraft not found under .*pool is car only"):
        ood = coarse_ood(splits, cfg)
    assert len(ood) == 1
