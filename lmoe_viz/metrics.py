"""Metrics, with the conventions stated once.

* Scores: higher = more in-distribution (scores.py).
* ID is the **positive** class for AUROC, FPR@TPR and AUPR-in (MixOE's and the paper's
  convention); AUPR-out takes OOD as positive with the negated score.
* ``fpr_at_tpr(..., tpr=0.95)`` (FPR95), convention ``"threshold"`` (default, DESIGN.md):
  the threshold t is the largest score that keeps at least 95% of ID samples at or above
  it; FPR95 is the fraction of OOD samples with score >= t. Convention ``"oe"`` follows
  the Outlier Exposure code that MixOE's evaluation reuses: on the ROC curve over
  distinct thresholds, take the point whose TPR is closest to 0.95 and report its FPR.
  The two agree on untied, well-populated data and may differ by a sample on ties.
* AUROC counts ties as half (Mann-Whitney), as scikit-learn does.
"""
from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from .errors import UserError

FPR_CONVENTIONS = ("threshold", "oe")


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
    return {"auroc": auroc(id_scores, ood_scores),
            "fpr95": fpr_at_tpr(id_scores, ood_scores, 0.95, convention),
            "aupr_in": aupr_in(id_scores, ood_scores),
            "aupr_out": aupr_out(id_scores, ood_scores)}


def evaluate_logits(id_logits, id_labels, ood_logits, score_name: str = "msp") -> dict:
    """Accuracy (%) and the OOD metrics of one score, from logits."""
    from .scores import score
    out = {"accuracy": accuracy(id_logits, id_labels), "score": score_name}
    out.update(ood_metrics(score(score_name, id_logits), score(score_name, ood_logits)))
    return out
