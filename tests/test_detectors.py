"""Post-hoc detectors from pytorch-ood (detectors.py): each declared input, higher = more
ID, fitted on the un-augmented ID training images, cached, and its bad inputs."""
import json
import shutil

import numpy as np
import pytest
import torch

from lmoe_viz import detectors as D
from lmoe_viz.cli import main
from lmoe_viz.config import RunConfig
from lmoe_viz.data import build_splits
from lmoe_viz.data.protocols import part_dataset
from lmoe_viz.errors import UserError
from lmoe_viz.evaluation import evaluate_checkpoint
from lmoe_viz.metrics import auroc


def _clusters(seed=0, n=300, d=16, k=4):
    """ID features around k centres, OOD features far from all of them."""
    rng = np.random.RandomState(seed)
    centres = rng.randn(k, d) * 4
    y = rng.randint(0, k, n)
    idf = (centres[y] + rng.randn(n, d)).astype(np.float32)
    ood = (rng.randn(n // 2, d) * 4 + 12).astype(np.float32)
    w = torch.as_tensor(centres, dtype=torch.float32)
    return {"features": idf, "labels": y, "logits": idf @ centres.T.astype(np.float32)}, \
        {"features": ood, "labels": -np.ones(len(ood), int),
         "logits": ood @ centres.T.astype(np.float32)}, w, torch.zeros(k)


@pytest.mark.parametrize("name", [n for n, d in D.DETECTORS.items() if d.needs in ("features", "head")])
def test_feature_detectors_score_higher_for_id(name):
    """Negated pytorch-ood scores: ID above far-away features (a sign error fails here)."""
    idp, oodp, w, b = _clusters()
    det = D.fitted(name, idp, w=w, b=b)
    s_id, s_ood = D.score_arrays(det, name, idp), D.score_arrays(det, name, oodp)
    assert s_id.shape == (300,) and np.isfinite(s_id).all()
    assert auroc(s_id, s_ood) > 0.9, name


@pytest.mark.parametrize("name", [n for n, d in D.DETECTORS.items() if d.needs == "logits"])
def test_logit_detectors_score_confident_logits_as_id(name):
    rng = np.random.RandomState(1)
    y = rng.randint(0, 4, 200)
    confident = np.eye(4)[y] * 6 + rng.randn(200, 4) * 0.3
    flat = rng.randn(100, 4) * 0.3
    idp = {"logits": confident.astype(np.float32), "labels": y}
    det = D.fitted(name, idp)
    s_id = D.score_arrays(det, name, idp)
    s_ood = D.score_arrays(det, name, {"logits": flat.astype(np.float32)})
    assert auroc(s_id, s_ood) > 0.9, name


def test_every_detector_declares_an_input_and_unknown_names_list_both_registries():
    assert all(d.needs in D.NEEDS for d in D.DETECTORS.values())
    assert {"mahalanobis", "rmd", "knn", "vim", "react", "ash", "odin", "entropy"} <= set(D.DETECTORS)
    with pytest.raises(UserError, match=r"unknown score or detector 'gram'.*msp.*mahalanobis"):
        D.detector_spec("gram")


def test_fitting_images_are_the_training_images_without_augmentation():
    cfg = RunConfig(preset="digits").resolved()
    splits = build_splits(cfg)
    fit = part_dataset("id_train_fit", splits, cfg)
    assert len(fit) == len(splits.id_train) and fit.augment is None
    torch.manual_seed(0)
    assert torch.equal(fit[3][0], fit[3][0]) and torch.equal(fit[3][0], splits.id_train.images[3])


def test_evaluate_with_detectors_fits_once_and_caches(tmp_path, digits_pretrained, monkeypatch, capsys):
    ck = tmp_path / "checkpoint.pt"
    shutil.copy(digits_pretrained, ck)
    calls = []
    real = D.fitted

    def counting(name, *a, **k):
        calls.append(name)
        return real(name, *a, **k)
    monkeypatch.setattr(D, "fitted", counting)
    first = {s: evaluate_checkpoint(ck, score=s) for s in ("mahalanobis", "vim", "react", "odin")}
    assert calls == ["mahalanobis", "vim", "react", "odin"]
    again = {s: evaluate_checkpoint(ck, score=s, convention="openood") for s in first}
    assert calls == ["mahalanobis", "vim", "react", "odin"]          # scores from the cache
    for s, m in first.items():
        assert m["score"] == s and 0.5 < m["auroc"] <= 1 and m["n_id"] == again[s]["n_id"]
        assert again[s]["auroc"] == pytest.approx(m["auroc"], abs=1e-12)   # AUROC equal across conventions
    assert main(["evaluate", "--checkpoint", str(ck), "--score", "knn"]) == 0
    assert json.loads(capsys.readouterr().out)["score"] == "knn"
    assert (ck.parent / "evaluate_holdout_knn_ours.json").is_file()


def test_detector_bad_inputs_are_one_line(tmp_path, digits_pretrained, capsys):
    ck = str(digits_pretrained)
    assert main(["evaluate", "--checkpoint", ck, "--score", "gram"]) == 2
    assert "unknown score or detector 'gram'" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", ck, "--score", "odin", "--recalibrate-bn",
                 "--out", str(tmp_path / "m.json")]) == 2
    assert "--recalibrate-bn applies to logit scores" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()
    with pytest.raises(UserError, match="needs the activations of the network"):
        D.check_arrays("react", {"id": {"logits": np.zeros((2, 3))}}, False, "x.npz")
    with pytest.raises(UserError, match="needs penultimate features and x.npz has none"):
        D.check_arrays("knn", {"id": {"logits": np.zeros((2, 3))}}, False, "x.npz")
    with pytest.raises(UserError, match="fc_weight and fc_bias"):
        D.check_arrays("vim", {"id": {"logits": np.zeros((2, 3)), "features": np.zeros((2, 4))}},
                       False, "x.npz")


@pytest.mark.parametrize("name", [n for n, d in D.DETECTORS.items() if d.state])
def test_a_fitted_detectors_state_is_cached_and_gives_the_same_scores(name, tmp_path):
    idp, oodp, w, b = _clusters(seed=3)
    path = tmp_path / "fitted.pt"
    first = D.cached_fit(path, name, lambda: D.fitted(name, idp, w=w, b=b))
    assert path.is_file()

    def refit():
        raise AssertionError("fitted again although its state is cached")
    again = D.cached_fit(path, name, refit)
    for part in (idp, oodp):
        assert np.array_equal(D.score_arrays(first, name, part), D.score_arrays(again, name, part))
    path.write_bytes(b"truncated")                            # unreadable: fitted again
    calls = []
    D.cached_fit(path, name, lambda: calls.append(1) or D.fitted(name, idp, w=w, b=b))
    assert calls == [1]
