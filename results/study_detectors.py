"""The claims study's secondary contrasts per score and post-hoc detector, one table.

    python results/study_detectors.py digits        # -> results/digits/study_detectors.md

Reads the committed ``results/<preset>/claims_verdicts.csv`` (``lmoe-viz study ...
--evaluate-only --detectors mahalanobis vim knn`` wrote the detector rows into the records
and ``claims.py`` the secondary tests) and tabulates, on the held-out classes (near-OOD),
convention ``ours``, AUROC: what L_LC does, Logit MixOE against MixOE, outlier exposure
against the CE fine-tune, and the CE fine-tune against the pretrained model, per score.
Secondary tests: unadjusted, never a verdict (claims.py).
"""
import sys
from pathlib import Path

import pandas as pd

from lmoe_viz.io import atomic_write_text
from lmoe_viz.tables import to_markdown

ROOT = Path(__file__).resolve().parent
CONTRASTS = ("L_LC effect, both methods", "Logit MixOE - MixOE without L_LC",
             "oe - CE fine-tune", "mixoe no-lc - CE fine-tune", "logit_mixoe no-lc - CE fine-tune",
             "CE fine-tune - pretrained")
#: the contrasts whose MSP cell is a primary hypothesis (claims.py), not a secondary test
PRIMARY = {"L_LC effect, both methods": "H1", "Logit MixOE - MixOE without L_LC": "H4"}


def ci_text(effect, low, high) -> str:
    """``+0.0126 [+0.0046, +0.0207]``: an effect and its 95% interval."""
    return f"{effect:+.4f} [{low:+.4f}, {high:+.4f}]"


def table(preset: str) -> str:
    v = pd.read_csv(ROOT / preset / "claims_verdicts.csv")
    s = v[(~v["primary"]) & (v["protocol"] == "holdout") & (v["endpoint"] == "auroc")
          & (v["metric_convention"] == "ours") & (v["statement"].isin(CONTRASTS))]
    cell = s.assign(text=[ci_text(*e) for e in zip(s["effect"], s["ci_low"], s["ci_high"])])
    wide = cell.pivot_table(index="statement", columns="score", values="text", aggfunc="first")
    wide = wide.reindex([c for c in CONTRASTS if c in wide.index])
    for statement, h in PRIMARY.items():       # MSP's cell of a primary contrast: its test
        row = v[v["primary"] & (v["hypothesis"] == h)]
        if statement in wide.index and len(row):
            r = row.iloc[0]
            ci = ci_text(r["effect"], r["ci_low"], r["ci_high"])
            wide.loc[statement, "msp"] = f"{ci} (primary {h})"
    n = int(s["n"].max()) if len(s) else 0
    head = (f"Secondary contrasts (unadjusted, never a verdict), preset {preset}: AUROC effect "
            f"[95% CI] on the held-out classes, convention `ours`, n = {n} units; one column per "
            "logit score or post-hoc detector (pytorch-ood 0.4, fitted on the un-augmented ID "
            "training images). Command: `python results/study_detectors.py "
            f"{preset}`, from `results/{preset}/claims_verdicts.csv`.\n\n")
    wide.columns.name = None
    return head + to_markdown(wide.rename_axis("statement").reset_index())


if __name__ == "__main__":
    preset = sys.argv[1] if len(sys.argv) > 1 else "digits"
    out = ROOT / preset / "study_detectors.md"
    atomic_write_text(out, table(preset))
    print(out)
