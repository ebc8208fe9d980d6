"""The claims study (study.py): its nested design, priority order, resumability, outputs and
bad inputs; the outliers without a shortcut and the far-OOD sets it relies on."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lmoe_viz import pixelstats
from lmoe_viz.cli import main
from lmoe_viz.config import RunConfig
from lmoe_viz.data import build_splits
from lmoe_viz.data import outliers as O
from lmoe_viz.data.protocols import FAR_SETS, far_part, part_dataset
from lmoe_viz.errors import UserError
from lmoe_viz.grid import cell_name
from lmoe_viz.io import file_sha256
from lmoe_viz.bntable import bn_table_cells
from lmoe_viz.study import Study


def test_cell_names_carry_lc_mode_regime_and_the_ce_control():
    assert cell_name("mixoe", True, 1.0, 0) == "mixoe_lc_a1_s0"          # runs made before --bn
    assert cell_name("logit_mixoe", True, 0.3, 2, "stop-id", "id-stats") == \
        "logit_mixoe_lc-stop-id_a0.3_s2_bn-id-stats"
    assert cell_name("ce", False, 1.0, 3, bn="id-stats") == "ce_s3_bn-id-stats"   # not "pretrained"


def test_design_is_nested_complete_unique_and_in_priority_order():
    s = Study(preset="fashion-mnist")
    assert (s.units, s.extra_units, s.pretrained_models) == (10, 5, 5)
    cells = s.cells()
    dirs = [s.run_dir(c) for c in cells]
    assert len(set(dirs)) == len(dirs) == 10 * 6 + 5 * (2 * 2 * 2 + 2 * 3)
    # unit u fine-tunes pretrained model u mod 5 with seed u: seeds nested in models
    for c, d in zip(cells, dirs):
        assert d.parent.name == f"p{c.seed % 5}" and c.init == str(d.parent / "pretrained" / "checkpoint.pt")
    assert {c.bn for c in cells} == {"id-stats"} and {c.outliers for c in cells} == {"matched"}
    # every unit's core runs (claims 1, 2, 4, controls) first, unit 0 first
    core = cells[:60]
    assert [c.seed for c in core[:6]] == [0] * 6
    assert {(c.method, c.lc, c.alpha) for c in core if c.method in ("mixoe", "logit_mixoe")} == \
        {(m, lc, 1.0) for m in ("mixoe", "logit_mixoe") for lc in (False, True)}
    assert {c.method for c in core} == {"ce", "oe", "mixoe", "logit_mixoe"}
    assert {c.seed for c in cells[60:]} == set(range(5))
    # the pretrained models differ by their seed
    pre = [c for c, _ in s.pretrain_dirs()]
    assert [c.seed for c in pre] == list(range(5)) and {c.method for c in pre} == {"baseline"}
    assert len(s.cells(units=2)) == 2 * 6 + 2 * 14


def test_bn_table_covers_every_model_under_every_regime():
    cells = bn_table_cells(Study())
    assert {(c.method, c.lc, c.bn) for c in cells} == {
        (m, lc, bn) for m, lc in (("oe", False), ("mixoe", False), ("mixoe", True),
                                  ("logit_mixoe", False), ("logit_mixoe", True))
        for bn in ("separate", "joint", "id-stats")}


def test_matched_outliers_hold_an_id_images_pixels_and_no_intensity_shortcut():
    s = build_splits(RunConfig(preset="digits", outliers="matched").resolved())
    ids = pixelstats.raw_images(s.id_train, s)
    aux = pixelstats.raw_images(s.aux, s)
    pool = {tuple(np.sort(np.round(x.ravel(), 5))) for x in ids}
    assert all(tuple(np.sort(np.round(a.ravel(), 5))) in pool for a in aux[:50])
    assert pixelstats.pixel_stats_auroc(ids, aux) <= pixelstats.SHORTCUT_MAX
    crops = build_splits(RunConfig(preset="digits").resolved())
    assert pixelstats.pixel_stats_auroc(ids, pixelstats.raw_images(crops.aux, crops)) > 0.99
    assert set(O.HELDOUT_PHOTOS).isdisjoint(O.TRAIN_PHOTOS)
    assert set(O.HELDOUT_PHOTOS) | set(O.TRAIN_PHOTOS) == set(O.named_photos())


def test_pixel_features_by_hand():
    x = np.zeros((1, 1, 2, 2))
    x[0, 0, 0, 0] = 1.0
    x[0, 0, 1, 1] = 0.5
    f = pixelstats.pixel_features(x)[0]
    assert f[0] == 0.5 and f[8] == 0.25 and f[15] == 0.25           # bins [0, 1/16), [.5, ..), [15/16, 1]
    assert f[16] == pytest.approx(0.375) and f[17] == pytest.approx(np.std([1, 0.5, 0, 0]))
    assert f[18] == 0.5


def test_far_ood_sets_are_named_and_none_is_trained_on():
    cfg = RunConfig(preset="digits", outliers="matched").resolved()
    s = build_splits(cfg)
    photos = part_dataset(far_part("photos-heldout"), s, cfg)
    assert len(photos) == len(s.id_test)
    # the held-out photographs' crops, never a training texture: each from HELDOUT_PHOTOS
    ref = O.photo_crops(len(photos), 8, 1, seed=1_000_003 + cfg.split, photos=O.HELDOUT_PHOTOS)
    assert torch.allclose(photos.images, (ref - s.info["pixel_norm"][0]) / s.info["pixel_norm"][1])
    with pytest.raises(UserError, match="pass --outliers matched"):
        plain = RunConfig(preset="digits").resolved()
        part_dataset(far_part("photos-heldout"), build_splits(plain), plain)
    with pytest.raises(UserError, match="unknown far-OOD set"):
        part_dataset(far_part("svhn"), s, cfg)
    assert FAR_SETS["fashion-mnist"] == ("photos-heldout", "digits-28")


def test_digits_28_is_scikit_learns_digits_at_28_px(fashion_dir):
    cfg = RunConfig(preset="fashion-mnist", data_root=str(fashion_dir), outliers="matched").resolved()
    s = build_splits(cfg)
    ds = part_dataset(far_part("digits-28"), s, cfg)
    raw = pixelstats.raw_images(ds, s)
    assert raw.shape[1:] == (1, 28, 28) and len(ds) == min(len(s.id_test), 1797)
    assert pixelstats.background_fraction(raw).mean() > 0.3             # white on black


def test_ce_fine_tune_uses_no_outliers_and_keeps_its_own_name(tmp_path, digits_pretrained):
    from lmoe_viz.train import train
    train(RunConfig(preset="digits", method="ce", epochs=1, init=str(digits_pretrained),
                    device="cpu", outliers="matched"), tmp_path / "ce", progress=False)
    m = json.loads((tmp_path / "ce" / "metrics.json").read_text())
    assert m["finished"] and m["config"]["method"] == "ce"
    assert set(m["history"][0]) >= {"train_loss", "train_ce_id"} and not any(
        "oe" in k or "lc" in k or "mix" in k for k in m["history"][0])
    assert RunConfig(preset="digits", method="ce").identity() != RunConfig(preset="digits").identity()
    # outliers do not enter the identity of runs that use none
    assert RunConfig(preset="digits", method="ce", outliers="matched").identity() == \
        RunConfig(preset="digits", method="ce").identity()
    assert RunConfig(preset="digits", method="oe", outliers="matched").identity() != \
        RunConfig(preset="digits", method="oe").identity()


@pytest.mark.slow
def test_study_cli_trains_evaluates_resumes_and_refuses_another_design(tmp_path, capsys):
    args = ["study", "--preset", "digits", "--out", str(tmp_path), "--pretrained-models", "2",
            "--units", "2", "--extra-units", "2", "--alphas", "1", "3", "--lc-modes", "norm",
            "--pretrain-epochs", "1", "--finetune-epochs", "1", "--limit-batches", "2"]
    assert main(args + ["--max-runs", "5"]) == 0
    out = capsys.readouterr().out
    assert "0 of 24 runs finished, 24 to train; training 5 now" in out and "'trained': 5" in out
    assert "study digits: 5 of 24 runs finished" in out
    res = pd.read_csv(tmp_path / "results" / "results.csv")
    trained = res[res.method != "reference"]
    assert trained["run"].nunique() == 2 + 5             # 2 pretrained models + 5 runs
    assert set(zip(trained.protocol, trained.ood_set)) == {
        ("holdout", "heldout-classes"), ("far", "photos-heldout")} | (
        {("far", "fashion-8")} if "fashion-8" in set(res.ood_set) else set())
    need = {"run", "method", "lc", "lc_mode", "alpha", "seed", "pretrain_seed", "split", "bn",
            "protocol", "ood_set", "score", "metric_convention", "accuracy", "auroc", "fpr95"}
    assert need <= set(res.columns)
    refs = res[res.method == "reference"]
    assert set(refs.score) == {"pixel-stats", "background"} and set(refs.ood_set) == set(trained.ood_set)
    v = pd.read_csv(tmp_path / "results" / "claims_verdicts.csv")
    prim = v[v.primary]
    assert len(prim) == 7 and set(prim.verdict) == {"not run yet"}     # the pre-registered family
    sc = pd.read_csv(tmp_path / "results" / "shortcut.csv")
    assert set(sc.outliers) == {"crops", "matched"}
    # resumable: the next call finds 5 finished and trains 1 more
    assert main(args + ["--max-runs", "1"]) == 0
    assert "5 of 24 runs finished, 19 to train; training 1 now" in capsys.readouterr().out
    # on another machine: no checkpoints, the committed records; nothing is trained again
    res_dir = tmp_path / "results"
    records = sorted(p.relative_to(res_dir / "records") for p in (res_dir / "records").rglob("*.json"))
    assert len(records) == 2 + 6 and Path("p0/pretrained.json") in records
    rec = json.loads((res_dir / "records" / "p0" / "pretrained.json").read_text())
    assert rec["checkpoint_sha256"] == file_sha256(tmp_path / "runs/p0/pretrained/checkpoint.pt")
    before = {f: (res_dir / f).read_text() for f in ("results.csv", "norms.csv")}
    shutil.rmtree(tmp_path / "runs")
    assert main(args + ["--evaluate-only"]) == 0
    capsys.readouterr()
    assert {f: (res_dir / f).read_text() for f in before} == before      # rows from the records
    p1 = res_dir / "records/p1/pretrained.json"      # as if another CPU had written it
    p1.write_text(p1.read_text().replace(json.loads(p1.read_text())["checkpoint_sha256"], "0" * 64))
    assert main(args + ["--max-runs", "1"]) == 0       # unit 1's first run: only p1 is needed
    out = capsys.readouterr().out
    assert "6 of 24 runs finished, 18 to train; training 1 now" in out and "p1/pretrained in" in out
    assert "p1/pretrained: trained again here" in out and "from 000000000000" in out
    assert not (tmp_path / "runs/p0").exists()
    assert pd.read_csv(res_dir / "results.csv").query("method != 'reference'")["run"].nunique() == 2 + 7
    # another design in the same folders: one line, exit 2, design.json kept
    before = (tmp_path / "design.json").read_text()
    assert main([a if a != "3" else "2" for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another design" in err and "alphas" in err
    assert (tmp_path / "design.json").read_text() == before
    assert json.loads(before)["units"] == 2


@pytest.mark.slow
def test_secondary_detector_rows_are_evaluates_numbers_and_survive_a_plain_evaluation(tmp_path, capsys):
    """``--detectors``: each finished run's record gains rows of each detector in conventions
    ours and openood (and MSP in openood), equal to `lmoe-viz evaluate` on the checkpoint;
    they reach results.csv and the secondary tests; a later evaluation without the option
    keeps them, and the records' primary rows do not move."""
    from lmoe_viz.evaluation import evaluate_checkpoint
    args = ["study", "--preset", "digits", "--out", str(tmp_path), "--pretrained-models", "2",
            "--units", "2", "--extra-units", "2", "--alphas", "1", "3", "--lc-modes", "norm",
            "--pretrain-epochs", "1", "--finetune-epochs", "1", "--limit-batches", "2"]
    assert main(args + ["--max-runs", "2"]) == 0
    res_dir = tmp_path / "results"
    plain = {p: p.read_text() for p in (res_dir / "records").rglob("*.json")}
    assert main(args + ["--evaluate-only", "--detectors", "mahalanobis"]) == 0
    capsys.readouterr()
    res = pd.read_csv(res_dir / "results.csv")
    maha = res[res.score == "mahalanobis"]
    assert set(maha.metric_convention) == {"ours", "openood"}
    assert set(res[res.score == "msp"].metric_convention) == {"ours", "mixoe", "openood"}
    assert maha["run"].nunique() == 2 + 2 and set(maha.ood_set) == set(res[res.score == "msp"].ood_set)
    run = "p0/ce_s0_bn-id-stats"
    row = maha[(maha.run == run) & (maha.ood_set == "heldout-classes") & (maha.metric_convention == "ours")]
    ref = evaluate_checkpoint(tmp_path / "runs" / run / "checkpoint.pt", score="mahalanobis")
    assert row["auroc"].item() == pytest.approx(ref["auroc"], abs=1e-12)
    for path, text in plain.items():              # the primary rows did not move
        rec = json.loads(path.read_text())
        assert rec["rows"] == json.loads(text)["rows"] and rec["extra"]["detectors"] == ["mahalanobis"]
    v = pd.read_csv(res_dir / "claims_verdicts.csv")
    assert (v[~v.primary]["score"] == "mahalanobis").any()
    with_extra = {p: p.read_text() for p in plain}
    assert main(args + ["--evaluate-only"]) == 0          # without --detectors: kept
    assert {p: p.read_text() for p in plain} == with_extra
    assert (pd.read_csv(res_dir / "results.csv").score == "mahalanobis").sum() == len(maha)


@pytest.mark.parametrize("extra,msg", [
    (["--alphas", "0", "1"], "--alphas must be > 0"),
    (["--alphas", "0.3", "3"], "lacks 1"),
    (["--lc-modes", "sideways"], "unknown adaptive L_LC mode 'sideways'"),
    (["--units", "1"], "--units 1: a test needs at least 2"),
    (["--pretrained-models", "1"], "--pretrained-models 1"),
    (["--preset", "bird"], "the study runs on the embedded presets"),
    (["--extra-units", "25"], "--extra-units 25 exceeds --units 20"),
    (["--detectors", "odin"], "--detectors odin: it runs the network"),
    (["--detectors", "mahalanobys"], "unknown score or detector 'mahalanobys'")])
def test_study_bad_input_is_one_line_and_trains_nothing(tmp_path, capsys, extra, msg):
    assert main(["study", "--preset", "digits", "--out", str(tmp_path / "s"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_study_without_its_data_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("lmoe_viz.data.fashion.DEBIAN_DIR", tmp_path / "none")
    assert main(["study", "--preset", "fashion-mnist", "--out", str(tmp_path / "s"),
                 "--data-root", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert "Fashion-MNIST not found" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_a_pilots_design_may_grow_and_nothing_else_changes(tmp_path):
    pilot = Study(preset="digits", out=str(tmp_path), units=4, extra_units=2, pretrained_models=2)
    pilot.check_design(tmp_path, pilot=True)
    full = Study(preset="digits", out=str(tmp_path), units=8, extra_units=4, pretrained_models=4)
    full.check_design(tmp_path)
    assert json.loads((tmp_path / "design.json").read_text())["stage"] == "full"
    with pytest.raises(UserError, match="another design"):      # a full design stays fixed
        Study(preset="digits", out=str(tmp_path), units=10, extra_units=4,
              pretrained_models=4).check_design(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    pilot.check_design(other, pilot=True)
    with pytest.raises(UserError, match="alphas"):              # a pilot's grid cannot change
        Study(preset="digits", out=str(tmp_path), units=8, alphas=(1.0, 3.0)).check_design(other)


def test_a_record_of_another_format_or_other_ood_sets_is_refused(tmp_path):
    study = Study(preset="digits", out=str(tmp_path / "s"), units=2, pretrained_models=2)
    rec = tmp_path / "records" / "p0" / "pretrained.json"
    rec.parent.mkdir(parents=True)
    assert study.read_record("p0/pretrained", tmp_path / "records") is None
    sets = [list(s) for s in study.eval_sets()]
    for bad, msg in (({"format": 0, "sets": sets}, "format 0"),
                     ({"format": 1, "sets": sets[:1]}, "evaluated on the OOD sets")):
        rec.write_text(json.dumps(bad))
        with pytest.raises(UserError, match=msg):
            study.read_record("p0/pretrained", tmp_path / "records")
