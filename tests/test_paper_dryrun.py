"""A dry run of every paper preset on the CPU, from the release files to every protocol.

Miniature trees in the real release layouts (tests/fakes.py) go through build-info or
import-mixoe, ``lmoe-viz data``, pretraining from a ResNet-50 state dict the test writes
(``--weights PATH``; nothing downloads), MixOE and Logit MixOE w/ L_LC fine-tuning, and
``evaluate`` under the holdout, paper and coarse protocols. ResNet-50 runs at
``--image-size 32`` (the documented dry-run override: 448-px transforms are tested on
single images in tests/data) with ``--limit-batches``, so each dataset takes well under a
minute here.
"""
import json

import pytest
import torch

import fakes
from lmoe_viz import tables as E
from lmoe_viz.cli import main
from lmoe_viz.errors import UserError
from lmoe_viz.io import file_sha256

pytestmark = pytest.mark.slow
SMALL = ["--image-size", "32", "--epochs", "2", "--limit-batches", "2", "--batch-size", "4",
         "--num-workers", "0", "--no-progress"]


@pytest.fixture(scope="session")
def rn50_weights(tmp_path_factory):
    import torchvision
    path = tmp_path_factory.mktemp("weights") / "resnet50_state_dict.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet50().state_dict(), path)
    return path


@pytest.fixture(scope="session")
def releases(tmp_path_factory):
    """All four datasets in their release layouts (car: the devkit) plus WebVision; the
    others' info files are built so that the coarse protocol has a pool."""
    from lmoe_viz.data.build_info import build_info
    root = tmp_path_factory.mktemp("releases")
    fakes.nabirds(root)
    fakes.aircraft(root)
    fakes.butterfly(root)
    fakes.cars_devkit(root)
    fakes.cub(root)
    fakes.webvision(root)
    for preset in ("bird", "aircraft", "butterfly", "car"):
        build_info(preset, root)
    return root


def _lines(path):
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def _dry_run(root, preset, weights, capsys, tmp_path, coarse: bool = True):
    assert main(["data", "--preset", preset, "--data-root", str(root)]) == 0
    assert "every listed image exists" in capsys.readouterr().out
    pre, mix, lmlc = tmp_path / "pre", tmp_path / "mixoe", tmp_path / "lmlc"
    common = ["--preset", preset, "--data-root", str(root), *SMALL]
    assert main(["pretrain", *common, "--weights", str(weights), "--out", str(pre)]) == 0
    m = json.loads((pre / "metrics.json").read_text())
    assert m["finished"] and m["select"] == "best-val" and m["selected_epoch"] in (1, 2)
    assert m["weights"]["sha256"] == file_sha256(weights) and m["weights"]["name"] == "file"
    assert all("val_accuracy" in h for h in m["history"]) and m["protocol"] == "holdout"
    init = str(pre / "checkpoint.pt")
    assert main(["finetune", *common, "--init", init, "--method", "mixoe", "--out", str(mix)]) == 0
    assert main(["finetune", *common, "--init", init, "--method", "logit_mixoe", "--lc",
                 "--out", str(lmlc)]) == 0
    ft = json.loads((lmlc / "metrics.json").read_text())
    assert ft["weights"]["sha256"] == file_sha256(weights)   # carried from the init checkpoint
    assert "train_lc" in ft["history"][0]
    capsys.readouterr()
    rows = {}
    protocols = (("holdout", "ours"), ("paper", "mixoe")) + ((("coarse", "mixoe"),) if coarse else ())
    for protocol, convention in protocols:
        assert main(["evaluate", "--checkpoint", str(lmlc / "checkpoint.pt"), "--protocol",
                     protocol, "--metric-convention", convention, "--data-root", str(root)]) == 0
        rows[protocol] = json.loads(capsys.readouterr().out)
        assert rows[protocol]["protocol"] == protocol
        assert rows[protocol]["metric_convention"] == convention
        assert 0 <= rows[protocol]["auroc"] <= 1
    assert rows["holdout"]["n_id"] == ft["id_test"] and rows["holdout"]["n_ood"] == ft["ood_test"]
    assert rows["paper"]["n_id"] == 32 * (ft["id_val"] // 32) == rows["paper"]["n_ood"]
    pool = sum(_lines(root / d / "test.txt") for d in ("bird", "aircraft", "butterfly", "car")
               if d != preset)
    if coarse:
        assert rows["coarse"]["n_id"] == ft["id_test"]
        assert rows["coarse"]["n_ood"] == min(ft["id_test"], pool)
    return ft


def test_dry_run_aircraft(releases, rn50_weights, capsys, tmp_path):
    assert main(["data", "build-info", "--preset", "aircraft", "--data-root", str(releases)]) == 0
    ft = _dry_run(releases, "aircraft", rn50_weights, capsys, tmp_path)
    assert ft["num_classes"] == 90


def test_dry_run_butterfly(releases, rn50_weights, capsys, tmp_path):
    assert main(["data", "build-info", "--preset", "butterfly", "--data-root", str(releases)]) == 0
    with pytest.warns(UserWarning, match="MixOE's 1-based butterfly labels"):
        ft = _dry_run(releases, "butterfly", rn50_weights, capsys, tmp_path)
    assert ft["num_classes"] == 150 and ft["dropped_labels"] > 0     # label 200 dropped


def test_dry_run_car_devkit(releases, rn50_weights, capsys, tmp_path):
    assert main(["data", "build-info", "--preset", "car", "--data-root", str(releases)]) == 0
    ft = _dry_run(releases, "car", rn50_weights, capsys, tmp_path)
    assert ft["num_classes"] == 150


def test_dry_run_cub_and_its_ssb_split(releases, rn50_weights, capsys, tmp_path):
    """CUB from its release (CUB_200_2011/), a random 100/100 hold-out, then SSB's split:
    trained on the 100 known classes, evaluated on the easy and hard unknown classes."""
    from lmoe_viz.data.ssb import ssb_classes
    assert main(["data", "build-info", "--preset", "cub", "--data-root", str(releases)]) == 0
    ft = _dry_run(releases, "cub", rn50_weights, capsys, tmp_path, coarse=False)
    assert ft["num_classes"] == 100
    assert main(["evaluate", "--checkpoint", str(tmp_path / "lmlc" / "checkpoint.pt"),
                 "--protocol", "coarse", "--data-root", str(releases)]) == 2
    assert "its birds would overlap NABirds" in capsys.readouterr().err
    common = ["--preset", "cub", "--data-root", str(releases), "--split", "ssb", *SMALL]
    pre, lm = tmp_path / "ssb_pre", tmp_path / "ssb_lm"
    assert main(["pretrain", *common, "--weights", str(rn50_weights), "--out", str(pre)]) == 0
    assert main(["finetune", *common, "--init", str(pre / "checkpoint.pt"), "--method",
                 "logit_mixoe", "--lc", "--out", str(lm)]) == 0
    m = json.loads((lm / "metrics.json").read_text())
    c = ssb_classes("cub")
    assert m["id_classes"] == sorted(c["known"]) and m["config"]["split"] == "ssb"
    capsys.readouterr()
    for grade in ("easy", "hard"):
        assert main(["evaluate", "--checkpoint", str(lm / "checkpoint.pt"), "--protocol",
                     f"ssb-{grade}", "--data-root", str(releases), "--metric-convention", "openood"]) == 0
        row = json.loads(capsys.readouterr().out)
        assert row["n_ood"] == len(c[grade]) and 0 <= row["oscr"] <= 1   # one test image a class


def test_dry_run_bird_via_import_mixoe(releases, rn50_weights, capsys, tmp_path):
    """MixOE's info files (paths relative to bird/images, no final newline) imported."""
    from lmoe_viz.data.finegrained import read_info
    ours = {s: read_info(releases / "bird" / f"{s}.txt") for s in ("train", "val", "test")}
    rows = {s: [(rel.removeprefix("images/"), lab) for rel, lab in r] for s, r in ours.items()}
    info = tmp_path / "mixoe" / "info"
    fakes.mixoe_info(info, "bird", rows)
    assert main(["data", "import-mixoe", "--preset", "bird", "--info-dir", str(info),
                 "--data-root", str(releases)]) == 0
    assert {s: read_info(releases / "bird" / f"{s}.txt") for s in ours} == ours
    ft = _dry_run(releases, "bird", rn50_weights, capsys, tmp_path)
    assert ft["num_classes"] == 200 and ft["dropped_labels"] > 0     # labels >= 255 dropped
    # notebook 06's path: Table I only beside paper-protocol numbers of the same runs
    paper = E.summary_table(E.results_table(tmp_path, protocol="paper", convention="mixoe",
                                            data_root=releases))
    assert set(paper.protocol) == {"paper"} and set(paper.metric_convention) == {"mixoe"}
    merged = E.with_paper(paper, "bird")
    row = merged[(merged.method == "logit_mixoe") & merged.lc].iloc[0]
    assert row.paper_accuracy == 81.50          # Table I, bird, alpha 1, Logit MixOE w/ L_LC
    with pytest.raises(UserError, match="only with numbers of the 'paper' protocol"):
        E.with_paper(E.summary_table(E.results_table(tmp_path)), "bird")
