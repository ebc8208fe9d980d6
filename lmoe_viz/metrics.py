"""Metrics, with the conventions stated once.

* Scores: higher = more in-distribution (scores.py).
* ID is the **positive** class for AUROC, ``FPR@TPR`` and AUPR-in (MixOE's and the paper's
  convention); AUPR-out takes OOD as positive with the negated score.
* Metric convention ``ours`` (default, DESIGN.md), on all samples:
  ``fpr_at_tpr(..., tpr=0.95)`` with ``"threshold"``: the threshold t is the largest score
  that keeps at least 95% of ID samples at or above it; FPR95 is the fraction of OOD
  samples with score >= t. AUROC counts ties as half (Mann-Whitney), as scikit-learn does.
  (``fpr_at_tpr`` convention ``"oe"``: the ROC point over distinct thresholds whose TPR is
  closest to 0.95, as scikit-learn-based OOD code does; it is *not* MixOE's rule.)
* Metric convention ``mixoe``: MixOE's evaluation (utils/calculate_log.py from the
  Mahalanobis-detector code, called by eval/eval.py), :func:`mixoe_metrics`:

  - the curve removes the lowest remaining score one at a time, from (TPR 1, FPR 1) to
    (0, 0); on a tie between an ID and an OOD score the ID sample goes first, so ties
    count against ID;
  - FPR95 is the FPR at the first curve point whose TPR is closest to 0.95 (float64);
  - AUROC is the trapezoid area under that staircase, i.e. P(ID score > OOD score)
    with ties scoring 0; AUPR-in integrates precision over recall with MixOE's end points
    (recall 1, precision 0.5) and (0, 0);
  - AUPR-out (calculate_log's AUOUT) integrates, over OOD recall (1 - FPR), the precision of
    the removed samples (removed OOD / all removed), with the end points (recall 0,
    precision 0) and (1, 0.5), skipping the point where nothing is removed yet;
  - each number is the mean of 10 runs on equal-size random subsamples: Python's
    ``random.seed(0)`` once per OOD set, then per run ``random.sample`` of
    min(n_ID, n_OOD) ID indices, then of as many OOD indices.

* Metric convention ``openood``: OpenOOD v1.5's ``openood/evaluators/metrics.py``
  (commit a59cdac), :func:`openood_metrics`, on all samples. **OOD is the positive class**
  and the score is negated; the ROC curve is scikit-learn's ``roc_curve`` (its default
  ``drop_intermediate``, so collinear tied points are merged); FPR95 is the fraction of
  ID samples flagged OOD at the first curve point whose OOD recall (TPR) is >= 0.95;
  AUROC is the trapezoid area under that curve (equal to ``ours``); AUPR-in and AUPR-out
  are trapezoid areas (``sklearn.metrics.auc``) under scikit-learn's
  ``precision_recall_curve`` with ID (score) resp. OOD (negated score) as positive, not
  the step-wise average precision of ``ours``.
"""
from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import (auc as trapezoid_area, average_precision_score,
                             precision_recall_curve, roc_auc_score, roc_curve)

from .errors import UserError
from .scores import score as score_of

FPR_CONVENTIONS = ("threshold", "oe")
METRIC_CONVENTIONS = ("ours", "mixoe", "openood")
MIXOE_RUNS = 10


def _labels_scores(id_scores, ood_scores):
    id_scores = np.asarray(id_scores, dtype=np.float64).ravel()
    ood_scores = np.asarray(ood_scores, dtype=np.float64).ravel()
    if id_scores.size == 0 or ood_scores.size == 0:
        raise UserError(f"need ID and OOD scores, got {id_scores.size} ID and "
                        f"{ood_scores.size} OOD")
    y = np.r_[np.ones(id_scores.size), np.zeros(ood_scores.size)]
    return y, np.r_[id_scores, ood_scores], id_scores, ood_scores


def auroc(id_scores, ood_scores) -> float:
    """Area under the ROC curve, ID positive; ties count one half."""
    y, s, _, _ = _labels_scores(id_scores, ood_scores)
    return float(roc_auc_score(y, s))


def fpr_at_tpr(id_scores, ood_scores, tpr: float = 0.95, convention: str = "threshold") -> float:
    """False-positive rate (OOD accepted as ID) at the given ID true-positive rate."""
    if not 0 < tpr <= 1:
        raise UserError(f"tpr must be in (0, 1], got {tpr}")
    y, s, ids, ood = _labels_scores(id_scores, ood_scores)
    if convention == "threshold":
        k = math.ceil(tpr * ids.size - 1e-9)
        t = np.sort(ids)[::-1][k - 1]
        return float(np.mean(ood >= t))
    if convention == "oe":
        fpr, tpr_curve, _ = roc_curve(y, s, drop_intermediate=False)
        return float(fpr[np.argmin(np.abs(tpr_curve - tpr))])
    raise UserError(f"unknown FPR convention {convention!r}; choose one of "
                    f"{', '.join(FPR_CONVENTIONS)}")


def aupr_in(id_scores, ood_scores) -> float:
    """Average precision with ID as positive."""
    y, s, _, _ = _labels_scores(id_scores, ood_scores)
    return float(average_precision_score(y, s))


def aupr_out(id_scores, ood_scores) -> float:
    """Average precision with OOD as positive and the score negated."""
    y, s, _, _ = _labels_scores(id_scores, ood_scores)
    return float(average_precision_score(1 - y, -s))


def accuracy(logits, labels) -> float:
    """Top-1 accuracy in percent."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    return float(100.0 * np.mean(logits.argmax(1) == labels))


def ood_metrics(id_scores, ood_scores, convention: str = "threshold") -> dict:
    """AUROC, FPR95, AUPR-in and AUPR-out on all samples, ID positive (convention ``ours``);
    ``convention`` is fpr_at_tpr's FPR95 rule (``threshold`` or ``oe``), not a metric
    convention. UserError for an empty set or an unknown rule."""
    return {"auroc": auroc(id_scores, ood_scores),
            "fpr95": fpr_at_tpr(id_scores, ood_scores, 0.95, convention),
            "aupr_in": aupr_in(id_scores, ood_scores),
            "aupr_out": aupr_out(id_scores, ood_scores)}


def metrics_row(id_part: dict, ood_part: dict, score: str = "msp", convention: str = "ours",
                scores: tuple | None = None) -> dict:
    """The one metrics row of a model's ID and OOD logits (``{"logits", "labels"}`` each, as
    extract.py gives them): accuracy (%) on the ID part, the sample counts, and the OOD
    metrics of one score (scores.py) under one metric convention (module doc). Training
    (train.test_metrics), ``lmoe-viz evaluate`` (evaluation.py), the study's records and
    the BatchNorm table build their rows with it. ``scores``: the (ID, OOD) scores when
    ``score`` is not a logit score of scores.py (a post-hoc detector, detectors.py)."""
    id_logits, ood_logits = id_part["logits"], ood_part["logits"]
    if scores is None:
        scores = (score_of(score, id_logits), score_of(score, ood_logits))
    return {"accuracy": accuracy(id_logits, id_part["labels"]), "score": score,
            "n_id": int(len(id_logits)), "n_ood": int(len(ood_logits)),
            **metrics_by_convention(*scores, convention)}


def mixoe_curve(id_scores, ood_scores) -> tuple[np.ndarray, np.ndarray]:
    """(tp, fp) counts of MixOE's staircase: after removing the l lowest scores (ID
    before OOD on ties), tp[l] ID and fp[l] OOD samples remain; l = 0..n_ID + n_OOD."""
    _, _, ids, ood = _labels_scores(id_scores, ood_scores)
    scores = np.r_[ids, ood]
    is_ood = np.r_[np.zeros(ids.size, int), np.ones(ood.size, int)]
    order = np.lexsort((is_ood, scores))          # by score, ID first on a tie
    removed_ood = np.r_[0, np.cumsum(is_ood[order])]
    removed_id = np.arange(scores.size + 1) - removed_ood
    return ids.size - removed_id, ood.size - removed_ood


def mixoe_single(id_scores, ood_scores) -> dict:
    """AUROC, FPR95, AUPR-in and AUPR-out of one run by MixOE's rules (module doc), no
    subsampling."""
    tp, fp = mixoe_curve(id_scores, ood_scores)
    n_id, n_ood = tp[0], fp[0]
    tpr, fpr = tp / n_id, fp / n_ood
    pos = int(np.argmin(np.abs(tpr - 0.95)))
    tpr_ext, fpr_ext = np.r_[1.0, tpr, 0.0], np.r_[1.0, fpr, 0.0]   # zero-width end points
    auroc_ = float(-np.trapezoid(1.0 - fpr_ext, tpr_ext))
    keep = (tp + fp) > 0
    recall = np.r_[1.0, tp[keep] / n_id, 0.0]
    precision = np.r_[0.5, tp[keep] / (tp + fp)[keep], 0.0]
    removed_id, removed_ood = n_id - tp, n_ood - fp
    out = (removed_id + removed_ood) > 0
    recall_out = np.r_[0.0, 1.0 - fpr[out], 1.0]
    precision_out = np.r_[0.0, removed_ood[out] / (removed_id + removed_ood)[out], 0.5]
    return {"auroc": auroc_, "fpr95": float(fp[pos] / n_ood),
            "aupr_in": float(-np.trapezoid(precision, recall)),
            "aupr_out": float(np.trapezoid(precision_out, recall_out))}


def mixoe_metrics(id_scores, ood_scores, runs: int = MIXOE_RUNS, seed: int = 0) -> dict:
    """MixOE's eval: the mean (and population std) over ``runs`` equal-size subsamples."""
    import random
    _, _, ids, ood = _labels_scores(id_scores, ood_scores)
    rng = random.Random(seed)
    n = min(ids.size, ood.size)
    per_run = []
    for _ in range(runs):
        i = rng.sample(range(ids.size), n)
        o = rng.sample(range(ood.size), n)
        per_run.append(mixoe_single(ids[i], ood[o]))
    out = {k: float(np.mean([r[k] for r in per_run])) for k in per_run[0]}
    out.update({f"{k}_std": float(np.std([r[k] for r in per_run])) for k in per_run[0]})
    out["runs"], out["subsample"] = runs, n
    return out


def openood_metrics(id_scores, ood_scores) -> dict:
    """AUROC, FPR95, AUPR-in and AUPR-out by OpenOOD v1.5's rules (module doc): OOD
    positive, the score negated, FPR95 at the first ROC point with OOD recall >= 0.95."""
    y, s, _, _ = _labels_scores(id_scores, ood_scores)
    is_ood = 1 - y
    fpr, tpr, _ = roc_curve(is_ood, -s)
    p_in, r_in, _ = precision_recall_curve(y, s)
    p_out, r_out, _ = precision_recall_curve(is_ood, -s)
    return {"auroc": float(trapezoid_area(fpr, tpr)),
            "fpr95": float(fpr[int(np.argmax(tpr >= 0.95))]),
            "aupr_in": float(trapezoid_area(r_in, p_in)),
            "aupr_out": float(trapezoid_area(r_out, p_out))}


def oscr(id_scores, id_correct, ood_scores) -> float:
    """Open-Set Classification Rate (Dhamija et al., 2018) by the rule of the SSB code
    (sgvaze/osr_closed_set_all_you_need, test/utils.py ``compute_oscr``): the known then
    the unknown samples' scores (higher = more known) in one array, ordered by numpy's
    default argsort (its quicksort: tied samples fall where that sort puts them, as there);
    at each cut-off k = 0..n-2 the correct classification rate counts the correctly
    classified known samples after position k over all known samples, the false-positive
    rate the unknown samples from position k on over all unknown samples; the points
    (0, 0), (0, 0) and (1, 1) are added, all points sorted in descending order (FPR, then
    CCR) and the area summed by trapezoids."""
    ids = np.asarray(id_scores, dtype=np.float64).ravel()
    ood = np.asarray(ood_scores, dtype=np.float64).ravel()
    correct = np.asarray(id_correct, dtype=bool).ravel()
    if ids.size == 0 or ood.size == 0 or correct.size != ids.size:
        raise UserError(f"OSCR needs known and unknown scores and one correctness flag per known "
                        f"sample, got {ids.size} known, {ood.size} unknown, {correct.size} flags")
    order = np.r_[ids, ood].argsort()
    known_ok = np.r_[correct, np.zeros(ood.size, bool)][order].astype(np.float64)
    unknown = np.r_[np.zeros(ids.size), np.ones(ood.size)][order]
    n = ids.size + ood.size
    tail_ok = np.r_[np.cumsum(known_ok[::-1])[::-1], 0.0]     # tail_ok[k]: correct at >= k
    tail_unk = np.cumsum(unknown[::-1])[::-1]
    ccr, fpr = np.zeros(n + 2), np.zeros(n + 2)
    ccr[:n - 1] = tail_ok[1:n] / ids.size
    fpr[:n - 1] = tail_unk[:n - 1] / ood.size
    ccr[n + 1] = fpr[n + 1] = 1.0
    desc = np.lexsort((ccr, fpr))[::-1]
    f, c = fpr[desc], ccr[desc]
    return float(np.sum((f[:-1] - f[1:]) * (c[:-1] + c[1:]) / 2.0))


def metrics_by_convention(id_scores, ood_scores, convention: str = "ours") -> dict:
    """OOD metrics under a named convention: ``ours``, ``mixoe`` or ``openood`` (module doc)."""
    if convention == "ours":
        return {**ood_metrics(id_scores, ood_scores), "metric_convention": "ours"}
    if convention == "mixoe":
        return {**mixoe_metrics(id_scores, ood_scores), "metric_convention": "mixoe"}
    if convention == "openood":
        return {**openood_metrics(id_scores, ood_scores), "metric_convention": "openood"}
    raise UserError(f"unknown metric convention {convention!r}; choose one of "
                    f"{', '.join(METRIC_CONVENTIONS)}")
