"""Our metric code against the reference repositories' own functions on the same scores:
OpenOOD v1.5 (``openood/evaluators/metrics.py``: ``auc_and_fpr_recall``), MixOE
(``utils/calculate_log.py``: ``metric``) and the SSB code (``test/utils.py``:
``compute_oscr``). The references are read from your clones (nothing of them is shipped):

    python results/reference_agreement.py OPENOOD_CLONE MIXOE_CLONE SSB_CLONE

300 cases of 5-300 ID and OOD scores, rounded to steps of 1, 1/2, 1/10, 1/100 or not at
all (ties of every density); prints the largest absolute difference per metric.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from lmoe_viz.metrics import mixoe_single, openood_metrics, oscr


def _load(path: Path, start: str | None = None, end: str | None = None, fixes=()) -> dict:
    src = path.read_text().replace("\t", "    ")
    if start:
        src = src[src.index(start):src.index(end) if end else None]
    for old, new in fixes:
        src = src.replace(old, new)
    ns: dict = {"np": np}
    exec(compile(src, str(path), "exec"), ns)  # noqa: S102 - the user's own clone, a local check
    return ns


def main(openood: str, mixoe: str, ssb: str) -> dict:
    ood_ns = _load(Path(openood) / "openood/evaluators/metrics.py")
    mix_ns = _load(Path(mixoe) / "utils/calculate_log.py",
                   fixes=(("from scipy import misc", ""), ("import matplotlib.pyplot as plt", ""),
                          ("import matplotlib", ""), ("np.trapz(", "np.trapezoid(")))
    ssb_ns = _load(Path(ssb) / "test/utils.py", "def compute_oscr", "class EvaluateOpenSet",
                   fixes=(("print(f'OSCR: {OSCR}')", ""),))
    worst: dict = {}

    def note(key, a, b):
        worst[key] = max(worst.get(key, 0.0), abs(float(a) - float(b)))
    rng = np.random.RandomState(0)
    for trial in range(300):
        n_id, n_ood = rng.randint(5, 300), rng.randint(5, 300)
        step = [1, 2, 10, 100, None][trial % 5]
        ids, ood = rng.randn(n_id) + 1, rng.randn(n_ood)
        if step:
            ids, ood = np.round(ids * step) / step, np.round(ood * step) / step
        label = np.r_[np.zeros(n_id, int), -np.ones(n_ood, int)]
        auroc, aupr_in, aupr_out, fpr = ood_ns["auc_and_fpr_recall"](np.r_[ids, ood], label, 0.95)
        o = openood_metrics(ids, ood)
        for k, v in (("auroc", auroc), ("aupr_in", aupr_in), ("aupr_out", aupr_out), ("fpr95", fpr)):
            note(("openood", k), o[k], v)
        r = mix_ns["metric"](ids.copy(), ood.copy())["TMP"]
        m = mixoe_single(ids, ood)
        for k, v in (("auroc", r["AUROC"]), ("aupr_in", r["AUIN"]), ("aupr_out", r["AUOUT"]),
                     ("fpr95", 1 - r["TNR"])):
            note(("mixoe (one run)", k), m[k], v)
        correct = rng.rand(n_id) < 0.7
        ref = ssb_ns["compute_oscr"](-ids, -ood, np.where(correct, 0, 1), np.zeros(n_id, int))
        note(("ssb", "oscr"), oscr(ids, correct, ood), ref)
    for (convention, metric), v in sorted(worst.items()):
        print(f"{convention:<16} {metric:<9} max |ours - reference| = {v:.1e}")
    return worst


if __name__ == "__main__":
    main(*sys.argv[1:4])
