"""The three metric conventions on the same scores: ours, MixOE's (calculate_log rules, 10
equal-size runs) and OpenOOD v1.5's (evaluators/metrics.py: OOD positive, trapezoid AUPRs):
`python results/metric_conventions.py` writes results/metric_conventions.md.

Cases: digits runs trained here (pretrained, 15 epochs; Logit MixOE w/ L_LC, alpha 1,
5 epochs, seed 0, split 0; the `holdout` protocol), each with MSP, MaxLogit and Energy,
and two synthetic cases with many ties (scores rounded to 0.1, and saturated MSP).
CPU numbers: another machine may differ in the last digits of the trained cases.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from lmoe_viz.cli import main
from lmoe_viz.extract import extract
from lmoe_viz.metrics import METRIC_CONVENTIONS, metrics_by_convention
from lmoe_viz.scores import score

METRICS = ("auroc", "fpr95", "aupr_in", "aupr_out")
HEADER = ("| case | n ID / n OOD | metric | " + " | ".join(METRIC_CONVENTIONS)
          + " | mixoe - ours | openood - ours |\n|---|---|---|" + "---|" * (len(METRIC_CONVENTIONS) + 2))


def rows_for(name, id_s, ood_s, widest):
    """One row per metric: its value in each convention and the differences from ours
    (``widest`` keeps the largest |difference| per (metric, convention))."""
    m = {c: metrics_by_convention(id_s, ood_s, c) for c in METRIC_CONVENTIONS}
    rows = []
    for k in METRICS:
        diffs = {c: m[c][k] - m["ours"][k] for c in ("mixoe", "openood")}
        for c, d in diffs.items():
            widest[(k, c)] = max(widest.get((k, c), 0.0), abs(d))
        rows.append(f"| {name} | {len(id_s)} / {len(ood_s)} | {k} | "
                    + " | ".join(f"{m[c][k]:.4f}" for c in METRIC_CONVENTIONS)
                    + f" | {diffs['mixoe']:+.4f} | {diffs['openood']:+.4f} |")
    return rows


def main_(out: Path) -> None:
    tmp = Path(tempfile.mkdtemp())
    q = ["--no-progress", "--device", "cpu"]
    assert main(["pretrain", "--preset", "digits", "--out", str(tmp / "pre"), *q]) == 0
    assert main(["finetune", "--preset", "digits", "--init", str(tmp / "pre" / "checkpoint.pt"),
                 "--method", "logit_mixoe", "--lc", "--alpha", "1", "--out", str(tmp / "lmlc"), *q]) == 0
    lines, widest = [HEADER], {}
    for label, run in (("digits pretrained", "pre"), ("digits Logit MixOE w/ L_LC", "lmlc")):
        res = extract(tmp / run / "checkpoint.pt")
        for s in ("msp", "maxlogit", "energy"):
            lines += rows_for(f"{label}, {s}", score(s, res["id_test"]["logits"]),
                              score(s, res["ood_test"]["logits"]), widest)
    rng = np.random.RandomState(0)
    id_s, ood_s = rng.normal(1, 1, 60).round(1), rng.normal(0, 1, 25).round(1)
    lines += rows_for("synthetic, scores rounded to 0.1", id_s, ood_s, widest)
    id_s = np.r_[np.ones(40), rng.uniform(0.5, 1, 20)]
    ood_s = np.r_[np.ones(12), rng.uniform(0.3, 1, 18)]
    lines += rows_for("synthetic, saturated MSP (ties at 1.0)", id_s, ood_s, widest)
    summary = ["| metric | max abs(mixoe - ours) | max abs(openood - ours) |", "|---|---|---|"]
    summary += [f"| {k} | {widest[(k, 'mixoe')]:.4f} | {widest[(k, 'openood')]:.4f} |" for k in METRICS]
    out.write_text(
        "# Metric conventions: ours, MixOE's and OpenOOD's on the same scores\n\n"
        "Command: `python results/metric_conventions.py` (2-core CPU; the trained cases may "
        "differ in the last digits on another machine).\n\n"
        "- `ours`: all samples, ID positive; FPR95 = fraction of OOD at or above the threshold "
        "keeping >= 95% of ID; AUROC ties half; AUPRs are average precision.\n"
        "- `mixoe`: MixOE's calculate_log rules (ties count against ID, TPR closest to 0.95, "
        "AUIN/AUOUT trapezoids with its end points), mean of 10 runs on equal-size subsamples "
        "(random.seed(0)).\n"
        "- `openood`: OpenOOD v1.5 (evaluators/metrics.py), OOD positive: **FPR95 is another "
        "quantity**, the fraction of ID samples flagged OOD at 95% OOD recall (not OOD accepted "
        "at 95% ID recall); AUROC equals ours; AUPR-in/out are trapezoids under scikit-learn's "
        "precision-recall curves.\n\n"
        "Largest difference from `ours` over the cases below:\n\n" + "\n".join(summary)
        + "\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main_(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("metric_conventions.md"))
