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
            assert m["fpr95"] == (1.0 if convention == "mixoe" else 0.0)
            assert (m["score"], m["metric_convention"], m["n_id"], m["n_ood"]) == (name, convention, 2, 2)


# ---------------------------------------------------------------- OpenOOD's convention
def _openood_oracle(ids, ood):
    """OpenOOD v1.5's rules (openood/evaluators/metrics.py) written out by hand: OOD is
    positive and the score negated; the ROC points are one per distinct threshold
    (descending), a point collinear with both neighbours dropped (scikit-learn's
    drop_intermediate), (0, 0) in front; FPR95 at the first point with TPR >= 0.95;
    AUROC and both AUPRs are trapezoids, the PR curves one point per distinct threshold
    plus (recall 0, precision 1)."""
    def counts(pos, neg):                 # (fp, tp) at each distinct threshold, descending
        ts = sorted(set(pos) | set(neg), reverse=True)
        return ts, [(sum(v >= t for v in neg), sum(v >= t for v in pos)) for t in ts]

    def trapezoid(x, y):
        return sum((x[i + 1] - x[i]) * (y[i + 1] + y[i]) / 2 for i in range(len(x) - 1))

    neg_ood = [-v for v in ood]
    neg_id = [-v for v in ids]
    _, pts = counts(neg_ood, neg_id)
    keep = [0] + [i for i in range(1, len(pts) - 1)
                  if (pts[i + 1][0] - 2 * pts[i][0] + pts[i - 1][0],
                      pts[i + 1][1] - 2 * pts[i][1] + pts[i - 1][1]) != (0, 0)] + [len(pts) - 1]
    pts = [(0, 0)] + [pts[i] for i in sorted(set(keep))]
    fpr = [f / len(ids) for f, _ in pts]
    tpr = [t / len(ood) for _, t in pts]
    fpr95 = next(f for f, t in zip(fpr, tpr) if t >= 0.95)

    def aupr(pos, neg):
        _, c = counts(pos, neg)
        rec = [t / len(pos) for _, t in c][::-1] + [0.0]
        prec = [t / (t + f) for f, t in c][::-1] + [1.0]
        return -trapezoid(rec, prec)
    return {"auroc": trapezoid(fpr, tpr), "fpr95": fpr95, "aupr_in": aupr(list(ids), list(ood)),
            "aupr_out": aupr(neg_ood, neg_id)}


def test_openood_hand_computed():
    m = M.metrics_by_convention([0.9, 0.8, 0.4], [0.7, 0.4, 0.1], "openood")
    assert m["metric_convention"] == "openood"
    assert m["auroc"] == pytest.approx(7.5 / 9)            # the 0.4/0.4 tie counts one half
    assert m["fpr95"] == pytest.approx(1 / 3)              # all OOD recalled with 1 of 3 ID flagged
    assert m["aupr_in"] == pytest.approx(0.877778, abs=1e-6)   # trapezoids, not average precision
    assert m["aupr_out"] == pytest.approx(0.847222, abs=1e-6)


def test_openood_tied_and_saturated_cases():
    # every threshold adds one ID and one OOD sample: the collinear points are merged, so
    # the first point at >= 95% OOD recall is (1, 1): FPR95 1, not 0.95
    m = M.openood_metrics(list(range(20)), list(range(20)))
    assert m["fpr95"] == 1.0 and m["auroc"] == pytest.approx(0.5)
    assert M.fpr_at_tpr(list(range(20)), list(range(20))) == pytest.approx(0.95)   # ours differs
    # a saturated score (MSP 1.0 everywhere): one threshold; the trapezoid AUPRs give 0.75
    m = M.openood_metrics([1.0] * 4, [1.0] * 4)
    assert (m["auroc"], m["fpr95"], m["aupr_in"], m["aupr_out"]) == (0.5, 1.0, 0.75, 0.75)


@pytest.mark.parametrize("seed", range(8))
def test_openood_equals_its_rules_written_by_hand(seed):
    rng = np.random.RandomState(seed)
    ids = list(rng.randint(0, 9, rng.randint(3, 30)) / 2.0)     # many ties
    ood = list(rng.randint(0, 7, rng.randint(3, 30)) / 2.0)
    got, ref = M.openood_metrics(ids, ood), _openood_oracle(ids, ood)
    for k in ref:
        assert got[k] == pytest.approx(ref[k], abs=1e-12), k
    assert got["auroc"] == pytest.approx(M.auroc(ids, ood), abs=1e-12)   # same AUROC as ours
