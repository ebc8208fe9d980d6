import numpy as np
import pytest

from lmoe_viz import metrics as M
from lmoe_viz import scores as S
from lmoe_viz.errors import UserError


def test_perfect_separation():
    ids, ood = np.array([5.0, 6.0, 7.0]), np.array([1.0, 2.0])
    assert M.auroc(ids, ood) == 1.0
    assert M.fpr_at_tpr(ids, ood) == 0.0
    assert M.fpr_at_tpr(ids, ood, convention="oe") == 0.0
    assert M.aupr_in(ids, ood) == 1.0 and M.aupr_out(ids, ood) == 1.0
    # reversed: OOD scores higher than every ID score
    assert M.auroc(ood, ids) == 0.0
    assert M.fpr_at_tpr(ood, ids) == 1.0


def test_ties_get_half_credit():
    assert M.auroc([1.0, 1.0], [1.0, 1.0]) == 0.5
    assert M.auroc([2.0, 1.0], [1.0, 0.0]) == pytest.approx((1 + 1 + 0.5 + 1) / 4)


def test_fpr95_hand_computed_threshold_convention():
    ids = np.arange(1, 21, dtype=float)     # 20 ID scores 1..20; keep 19 -> threshold 2
    ood = np.array([0.0, 1.5, 2.0, 3.0])    # at or above 2: 2.0 and 3.0
    assert M.fpr_at_tpr(ids, ood, 0.95) == pytest.approx(0.5)
    assert M.fpr_at_tpr(ids, ood, 1.0) == pytest.approx(0.75)   # threshold 1
    # ID is the positive class: higher ID scores lower the FPR
    assert M.fpr_at_tpr(ids + 10, ood) == 0.0


def test_fpr_conventions_agree_on_untied_data():
    rng = np.random.RandomState(0)
    ids, ood = rng.randn(2000) + 2, rng.randn(3000)
    a, b = M.fpr_at_tpr(ids, ood), M.fpr_at_tpr(ids, ood, convention="oe")
    assert abs(a - b) < 2e-3


def test_bad_metric_input():
    with pytest.raises(UserError, match="ID and OOD"):
        M.auroc([], [1.0])
    with pytest.raises(UserError, match="convention"):
        M.fpr_at_tpr([1.0], [0.0], convention="nope")


def test_accuracy_percent():
    logits = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert M.accuracy(logits, [0, 1, 1, 1]) == 75.0


def test_scores_hand_computed():
    z = np.array([[0.0, np.log(3.0)], [3.0, 4.0]])
    assert S.msp(z)[0] == pytest.approx(0.75)
    assert np.allclose(S.maxlogit(z), [np.log(3.0), 4.0])
    assert S.energy(z)[0] == pytest.approx(np.log(4.0))
    assert S.logit_norm(z)[1] == pytest.approx(5.0)
    with pytest.raises(UserError, match="unknown score 'odin'"):
        S.score("odin", z)


def test_metrics_row_higher_is_more_id():
    id_logits = np.array([[5.0, 0.0], [0.0, 5.0]])
    ood_logits = np.array([[0.1, 0.0], [0.0, 0.2]])
    for name in S.SCORES:
        for convention in M.METRIC_CONVENTIONS:
            m = M.metrics_row({"logits": id_logits, "labels": [0, 1]},
                              {"logits": ood_logits, "labels": [-1, -1]}, name, convention)
            assert m["auroc"] == 1.0 and m["accuracy"] == 100.0
            # MixOE's FPR95 takes the first point whose TPR is closest to 0.95: with 2 ID
            # samples that is TPR 1 before any OOD sample is removed, so FPR 1
            assert m["fpr95"] == (0.0 if convention == "ours" else 1.0)
            assert (m["score"], m["metric_convention"], m["n_id"], m["n_ood"]) == (name, convention, 2, 2)
