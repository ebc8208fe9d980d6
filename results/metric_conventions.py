"""Our metric convention against MixOE's (calculate_log rules, 10 equal-size runs) on the
same scores: `python results/metric_conventions.py` writes results/metric_conventions.md.

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
from lmoe_viz.metrics import mixoe_metrics, ood_metrics
from lmoe_viz.scores import score


def rows_for(name, id_s, ood_s):
    ours, mix = ood_metrics(id_s, ood_s), mixoe_metrics(id_s, ood_s)
    return (f"| {name} | {len(id_s)} / {len(ood_s)} | {ours['auroc']:.4f} | {mix['auroc']:.4f} | "
            f"{mix['auroc'] - ours['auroc']:+.4f} | {ours['fpr95']:.4f} | {mix['fpr95']:.4f} | "
            f"{mix['fpr95'] - ours['fpr95']:+.4f} |")


def main_(out: Path) -> None:
    tmp = Path(tempfile.mkdtemp())
    q = ["--no-progress", "--device", "cpu"]
    assert main(["pretrain", "--preset", "digits", "--out", str(tmp / "pre"), *q]) == 0
    assert main(["finetune", "--preset", "digits", "--init", str(tmp / "pre" / "checkpoint.pt"),
                 "--method", "logit_mixoe", "--lc", "--alpha", "1", "--out", str(tmp / "lmlc"), *q]) == 0
    lines = ["| case | n ID / n OOD | AUROC ours | AUROC mixoe | diff | FPR95 ours | FPR95 mixoe | diff |",
             "|---|---|---|---|---|---|---|---|"]
    for label, run in (("digits pretrained", "pre"), ("digits Logit MixOE w/ L_LC", "lmlc")):
        res = extract(tmp / run / "checkpoint.pt")
        for s in ("msp", "maxlogit", "energy"):
            lines.append(rows_for(f"{label}, {s}", score(s, res["id_test"]["logits"]),
                                  score(s, res["ood_test"]["logits"])))
    rng = np.random.RandomState(0)
    id_s, ood_s = rng.normal(1, 1, 60).round(1), rng.normal(0, 1, 25).round(1)
    lines.append(rows_for("synthetic, scores rounded to 0.1", id_s, ood_s))
    id_s = np.r_[np.ones(40), rng.uniform(0.5, 1, 20)]
    ood_s = np.r_[np.ones(12), rng.uniform(0.3, 1, 18)]
    lines.append(rows_for("synthetic, saturated MSP (ties at 1.0)", id_s, ood_s))
    out.write_text("# Metric conventions: ours vs MixOE's\n\nCommand: `python results/metric_conventions.py`"
                   " (2-core CPU).\n`ours`: all samples, FPR95 at the threshold keeping >= 95% of ID, "
                   "AUROC ties half.\n`mixoe`: MixOE's calculate_log rules (ties count against ID, TPR "
                   "closest to 0.95), mean of 10 runs on equal-size subsamples (random.seed(0)).\n\n"
                   + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main_(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("metric_conventions.md"))
