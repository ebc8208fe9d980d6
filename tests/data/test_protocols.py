"""The evaluation protocols' data (paper, coarse) and MixOE's metric convention.

The tree holds four miniature releases (tests/fakes.py) turned into info files by
``build-info`` and the fake WebVision; the expected samples are drawn here with Python's
``random`` as MixOE's eval.py does. The metric oracle is MixOE's utils/calculate_log.py
(get_curve + metric) and eval.py's subsampling, written out below.
"""
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset
from torchvision import transforms as T

import fakes
from lmoe_viz.config import RunConfig
from lmoe_viz.data import build_splits
from lmoe_viz.data.build_info import build_info
from lmoe_viz.data.finegrained import ImageList
from lmoe_viz.data.protocols import part_dataset, protocol_parts
from lmoe_viz.errors import UserError
from lmoe_viz.metrics import mixoe_curve, mixoe_metrics, mixoe_single

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def rows(path):
    return [(rel, int(lab)) for rel, lab in
            (line.rsplit(" ", 1) for line in path.read_text(encoding="utf-8").splitlines())]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocols")
    for name, release in (("bird", fakes.nabirds), ("butterfly", fakes.butterfly),
                          ("car", fakes.cars_allinone), ("aircraft", fakes.aircraft)):
        release(root)
        build_info(name, root)
    fakes.webvision(root)
    return root


@pytest.fixture(scope="module")
def aircraft(tree):
    cfg = RunConfig(preset="aircraft", data_root=str(tree), image_size=64)
    return build_splits(cfg), cfg


def some_splits(**parts):
    """Only the parts a protocol reads (the rest None), as the Splits fields."""
    return SimpleNamespace(**{"id_test": None, "ood_test": None, "id_val": None, "aux": None,
                              "far_ood": None,
                              **parts})


def subset_paths(ds):
    assert isinstance(ds, Subset)
    return [ds.dataset.paths[i] for i in ds.indices]


# ---------------------------------------------------------------- names
def test_protocol_parts():
    assert protocol_parts("holdout") == ("id_test", "ood_test")
    assert protocol_parts("paper") == ("paper_id", "paper_ood")
    assert protocol_parts("coarse") == ("id_test", "coarse_ood")
    with pytest.raises(UserError, match=r"unknown protocol 'fine'; choose one of holdout, paper, "
                                        r"coarse"):
        protocol_parts("fine")


def test_unknown_part(aircraft):
    s, cfg = aircraft
    assert part_dataset("id_test", s, cfg) is s.id_test
    with pytest.raises(UserError, match=r"unknown part 'val_ood'"):
        part_dataset("val_ood", s, cfg)


# ---------------------------------------------------------------- paper
def test_paper_id_is_the_first_whole_batches_of_id_val(aircraft, tree):
    s, cfg = aircraft
    ids = set(s.id_classes)
    val = [tree / "aircraft" / rel for rel, lab in rows(tree / "aircraft" / "val.txt")
           if lab in ids]
    n = 32 * (len(val) // 32)
    assert n >= 32 and n < len(val)                  # the cut really drops images
    ds = part_dataset("paper_id", s, cfg)
    assert len(ds) == n and subset_paths(ds) == val[:n]
    assert ds.dataset is s.id_val
    x, y, _ = ds[n - 1]
    assert torch.equal(x, s.id_val[n - 1][0]) and y == s.id_val.labels[n - 1]


def test_paper_ood_is_mixoes_seeded_webvision_sample(aircraft):
    s, cfg = aircraft
    n = len(part_dataset("paper_id", s, cfg))
    ds = part_dataset("paper_ood", s, cfg)
    idx = random.Random(0).sample(range(len(s.aux)), n)     # random.seed(0); random.sample
    assert len(s.aux) > n and list(ds.indices) == idx
    assert subset_paths(ds) == [s.aux.paths[i] for i in idx]
    # the test transform (deterministic), not the outliers' training one
    a, b = ds[3][0], ds[3][0]
    assert torch.equal(a, b)
    with Image.open(s.aux.paths[idx[3]]) as img:
        expected = T.Compose([T.Resize((73, 73)), T.CenterCrop(64), T.ToTensor(),   # 64*512/448
                              T.Normalize(MEAN, STD)])(img.convert("RGB"))
    assert torch.equal(a, expected)


def test_paper_on_embedded_presets_is_id_test_vs_fresh_photo_crops():
    """No val split and no WebVision: ID test against as many crops drawn with another
    seed than the training outliers, normalised as the ID data."""
    from lmoe_viz.data.outliers import photo_crops
    from lmoe_viz.data.presets import FAR_OOD_SEED
    cfg = RunConfig(preset="digits")
    s = build_splits(cfg)
    assert s.id_val is None
    ids, ood = part_dataset("paper_id", s, cfg), part_dataset("paper_ood", s, cfg)
    assert ids is s.id_test and len(ood) == len(s.id_test)
    train_crops = s.aux.images[: len(ood)]
    assert not torch.allclose(ood.images, train_crops)                   # not the training outliers
    raw = photo_crops(len(ood), 8, 1, seed=FAR_OOD_SEED + cfg.split)
    ratio = (ood.images - ood.images.mean()) / ood.images.std()
    assert torch.allclose(ratio, (raw - raw.mean()) / raw.std(), atol=1e-4)   # same crops, affine norm
    assert set(ood.labels.tolist()) == {-1}


def test_paper_needs_val_images(tmp_path):
    cfg = RunConfig(preset="digits")
    s = build_splits(cfg)
    with pytest.raises(UserError, match=r"preset digits has no id_val split"):
        part_dataset("id_val", s, cfg)
    no_val = some_splits(id_val=None)
    for part in ("paper_id", "paper_ood"):
        with pytest.raises(UserError, match=r"protocol 'paper' needs ID validation images and "
                                            r"preset car has none"):
            part_dataset(part, no_val, RunConfig(preset="car"))
    few = some_splits(id_val=list(range(31)))
    with pytest.raises(UserError, match=r"needs at least 32 ID val images, found 31"):
        part_dataset("paper_id", few, RunConfig(preset="car"))


# ---------------------------------------------------------------- coarse
def test_coarse_pools_the_other_test_files_in_mixoes_order(aircraft, tree):
    s, cfg = aircraft
    pool, source = [], []
    for d in ("bird", "butterfly", "car"):                    # MixOE's order, aircraft is ID
        test = rows(tree / d / "test.txt")
        pool += [tree / d / rel for rel, _ in test]            # every label
        source += [d] * len(test)
    bird_high = [tree / "bird" / rel for rel, lab in rows(tree / "bird" / "test.txt") if lab >= 255]
    bf_200 = [tree / "butterfly" / rel for rel, lab in rows(tree / "butterfly" / "test.txt")
              if lab == 200]
    assert bird_high and bf_200
    ds = part_dataset("coarse_ood", s, cfg)
    assert ds.dataset.paths == pool
    assert set(bird_high + bf_200) <= set(ds.dataset.paths)
    n = min(len(s.id_test), len(pool))
    assert n == len(s.id_test) == 90
    idx = random.Random(0).sample(range(len(pool)), n)
    assert list(ds.indices) == idx and subset_paths(ds) == [pool[i] for i in idx]
    assert [Path(p).relative_to(cfg.data_root).parts[0] for p in subset_paths(ds)] == \
        [source[i] for i in idx]
    assert ds.dataset.transform is s.id_test.transform
    assert torch.equal(ds[0][0], ds[0][0])


def test_coarse_takes_the_whole_pool_when_smaller(tmp_path):
    (tmp_path / "aircraft").mkdir()
    (tmp_path / "aircraft" / "test.txt").write_text("a.jpg 0\nb b.jpg 3\nc.jpg 99\n")
    (tmp_path / "bird").mkdir()
    (tmp_path / "bird" / "test.txt").write_text("images/x.jpg 554\n")
    id_test = ImageList(["p"] * 10, [0] * 10, range(10), transform=None)
    cfg = RunConfig(preset="car", data_root=str(tmp_path))
    ds = part_dataset("coarse_ood", some_splits(id_test=id_test), cfg)
    pool = [tmp_path / "bird" / "images/x.jpg"] + [tmp_path / "aircraft" / r
                                                   for r in ("a.jpg", "b b.jpg", "c.jpg")]
    assert ds.dataset.paths == pool
    assert list(ds.indices) == random.Random(0).sample(range(4), 4)


def test_coarse_needs_another_dataset(tmp_path):
    (tmp_path / "car").mkdir()
    (tmp_path / "car" / "test.txt").write_text("cars_test/00001.jpg 0\n")
    id_test = ImageList(["p"], [0], [0], transform=None)
    with pytest.raises(UserError, match=r"protocol 'coarse' needs other fine-grained datasets "
                                        r"under .*bird/test\.txt, butterfly/test\.txt, "
                                        r"aircraft/test\.txt\); none found"):
        part_dataset("coarse_ood", some_splits(id_test=id_test),
                     RunConfig(preset="car", data_root=str(tmp_path)))


# ---------------------------------------------------------------- MixOE's metrics
def _trapz(y, x):
    x, y = np.asarray(x, float), np.asarray(y, float)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def calculate_log(known, novel):
    """MixOE's utils/calculate_log.py get_curve + metric (AUROC, TNR at TPR95, AUIN, AUOUT)."""
    known, novel = np.sort(np.array(known, float)), np.sort(np.array(novel, float))
    num_k, num_n = len(known), len(novel)
    tp, fp = -np.ones(num_k + num_n + 1, int), -np.ones(num_k + num_n + 1, int)
    tp[0], fp[0] = num_k, num_n
    k = n = 0
    for i in range(num_k + num_n):
        if k == num_k:
            tp[i + 1:] = tp[i]
            fp[i + 1:] = np.arange(fp[i] - 1, -1, -1)
            break
        elif n == num_n:
            tp[i + 1:] = np.arange(tp[i] - 1, -1, -1)
            fp[i + 1:] = fp[i]
            break
        elif novel[n] < known[k]:
            n += 1
            tp[i + 1], fp[i + 1] = tp[i], fp[i] - 1
        else:
            k += 1
            tp[i + 1], fp[i + 1] = tp[i] - 1, fp[i]
    pos = np.abs(tp / num_k - .95).argmin()
    tnr = 1. - fp[pos] / num_n
    tpr = np.concatenate([[1.], tp / tp[0], [0.]])
    fpr = np.concatenate([[1.], fp / fp[0], [0.]])
    auroc = -_trapz(1. - fpr, tpr)
    denom = (tp + fp).astype(float)
    denom[denom == 0.] = -1.
    keep = np.concatenate([[True], denom > 0., [True]])
    pin = np.concatenate([[.5], tp / denom, [0.]])
    auin = -_trapz(pin[keep], tpr[keep])
    denom = (tp[0] - tp + fp[0] - fp).astype(float)      # the removed samples
    denom[denom == 0.] = -1.
    keep = np.concatenate([[True], denom > 0., [True]])
    pout = np.concatenate([[0.], (fp[0] - fp) / denom, [.5]])
    auout = _trapz(pout[keep], (1. - fpr)[keep])
    return {"auroc": auroc, "fpr95": 1. - tnr, "aupr_in": auin, "aupr_out": auout}


def mixoe_eval(in_score, out_score, num_run=10):
    """eval.py get_and_print_results: random.seed(0) once, then per run a sample of the ID
    scores and one of the OOD scores, both of size min(n_ID, n_OOD)."""
    state = random.getstate()
    try:
        random.seed(0)
        size = min(len(in_score), len(out_score))
        runs = [calculate_log(np.array(random.sample(list(in_score), size)),
                              np.array(random.sample(list(out_score), size)))
                for _ in range(num_run)]
    finally:
        random.setstate(state)
    out = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
    out.update({f"{k}_std": float(np.std([r[k] for r in runs])) for k in runs[0]})
    return out


def test_hand_vectors():
    tp, fp = mixoe_curve([0.9, 0.8, 0.4], [0.7, 0.4, 0.1])
    assert tp.tolist() == [3, 3, 2, 2, 2, 1, 0] and fp.tolist() == [3, 2, 2, 1, 0, 0, 0]
    m = mixoe_single([0.9, 0.8, 0.4], [0.7, 0.4, 0.1])
    assert m["auroc"] == pytest.approx(7 / 9)          # the 0.4/0.4 tie scores 0
    assert m["fpr95"] == pytest.approx(1.0)
    assert m["aupr_in"] == pytest.approx(0.683333, abs=1e-6)
    # removed OOD / removed at OOD recall 1/3, 1/3, 2/3, 1 (1, 1/2, 2/3, 3/4, ...), from
    # (0, 0) to (1, 0.5): 1/6 + 0.19444 + 0.23611
    assert m["aupr_out"] == pytest.approx(0.597222, abs=1e-6)
    m = mixoe_single([5, 4, 3, 2, 1], [4.5, 3, 0.5, 0.2, 0.1])
    assert m["auroc"] == pytest.approx(0.72) and m["fpr95"] == pytest.approx(1.0)
    assert m["aupr_in"] == pytest.approx(0.591429, abs=1e-6)
    m = mixoe_single(np.linspace(1, 2, 20), np.linspace(0, 1.5, 20))
    assert m["fpr95"] == pytest.approx(0.35)


@pytest.mark.parametrize("seed", range(6))
def test_single_run_equals_calculate_log(seed):
    rng = np.random.RandomState(seed)
    ids = rng.randint(0, 8, rng.randint(5, 40)) / 2.0        # many ties
    ood = rng.randint(0, 6, rng.randint(5, 40)) / 2.0
    got, ref = mixoe_single(ids, ood), calculate_log(ids, ood)
    for k in ref:
        assert got[k] == pytest.approx(ref[k], abs=1e-12), k
    assert got["auroc"] == pytest.approx(np.mean(ids[:, None] > ood[None, :]), abs=1e-12)


@pytest.mark.parametrize("n_id,n_ood", [(60, 23), (23, 60), (30, 30)])
def test_mixoe_metrics_equal_mixoes_eval(n_id, n_ood):
    rng = np.random.RandomState(n_id + n_ood)
    ids = np.r_[rng.randn(n_id - 5) + 1.0, np.zeros(5)]
    ood = np.r_[rng.randn(n_ood - 5), np.zeros(5)]           # some ID/OOD ties at 0
    got, ref = mixoe_metrics(ids, ood), mixoe_eval(ids, ood)
    for k in ref:
        assert got[k] == pytest.approx(ref[k], abs=1e-12), k
    assert got["runs"] == 10 and got["subsample"] == min(n_id, n_ood)
    if n_id == n_ood:        # every run is a permutation of all scores: identical runs
        assert got["auroc_std"] == pytest.approx(0, abs=1e-12)
        assert got["fpr95_std"] == pytest.approx(0, abs=1e-12)
    else:                    # different subsets each run
        assert got["auroc_std"] > 0


def test_cache_digest_follows_the_info_files(tmp_path):
    """A coarse pool that grows, or a rewritten test.txt, gives another cache entry."""
    from lmoe_viz.config import RunConfig
    from lmoe_viz.data.build_info import build_info
    from lmoe_viz.data.protocols import inputs_digest
    fakes.aircraft(tmp_path)
    build_info("aircraft", tmp_path)
    cfg = RunConfig(preset="aircraft", data_root=str(tmp_path))
    holdout, coarse = inputs_digest(cfg, ["id_test"]), inputs_digest(cfg, ["coarse_ood"])
    fakes.cars_allinone(tmp_path, num_classes=3)
    build_info("car", tmp_path)
    assert inputs_digest(cfg, ["id_test"]) == holdout
    assert inputs_digest(cfg, ["coarse_ood"]) != coarse
    test = tmp_path / "aircraft" / "test.txt"
    test.write_text(test.read_text().splitlines()[0] + "\n")
    assert inputs_digest(cfg, ["id_test"]) != holdout
