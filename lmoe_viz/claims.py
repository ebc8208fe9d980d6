"""Verdicts on the paper's claims 1-5 (PAPER.md) from a study's results (study.py).

Every claim is a set of paired tests. A test compares two variants run with the same seed
(and the same alpha, regime and data), so seed-to-seed noise cancels: d_s = metric(A, s) -
metric(B, s) for each seed s both have. Its effect is the mean of d_s with a 95% t-interval
(mean +- t_{0.975, n-1} sd / sqrt(n)); the outcome is

* ``+``  the interval lies entirely on the side the claim predicts,
* ``-``  it lies entirely on the other side,
* ``0``  it contains 0, or fewer than 2 seeds (no interval).

A claim's verdict, per protocol and score, from its tests' outcomes (the RULE below):

* **supported**: ``+`` in more than half of its tests and ``-`` in none;
* **refuted**: ``-`` in more than half of its tests and ``+`` in none;
* **inconclusive**: anything else (mixed, too few seeds, or effects within noise).

A claim of several parts (3, 5) gets one verdict per part. Tests whose runs do not exist
yet (a study stopped early) are left out of the verdict and reported as not run. The tests, claim by claim:

1. L_LC improves detection: (method w/ L_LC) - (method), per method and alpha; AUROC
   higher (and, as a separate part, FPR95 lower).
2. L_LC shrinks the logit norm of OOD inputs: mean ||f(x)|| of the OOD images, (method w/
   L_LC) - (method), lower; the ID norm effect is reported beside it.
3. (a) larger alpha with L_LC helps detection: AUROC(alpha max) - AUROC(alpha min) with
   L_LC, per method, higher; (b) alpha trades accuracy: accuracy(alpha max) -
   accuracy(alpha min), lower.
4. Without L_LC, Logit MixOE detects worse than MixOE: AUROC(Logit MixOE) - AUROC(MixOE),
   per alpha, lower.
5. An adaptive L_LC suppresses OOD logits without eroding the ID class structure, per
   mode, per method and alpha: (a) accuracy, (mode) - (fixed L_LC), higher; (b) AUROC,
   (mode) - (no L_LC), higher.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .io import atomic_write_text

RULE = ("supported: '+' (95% interval of the paired effect on the claimed side) in more than "
        "half of the claim's tests and '-' in none; refuted: '-' in more than half and '+' in "
        "none; inconclusive otherwise (fewer than 2 seeds give no interval: '0')")
CLAIMS = {
    "1a": "L_LC raises AUROC",
    "1b": "L_LC lowers FPR95",
    "2": "L_LC shrinks the OOD logit norm",
    "3a": "with L_LC, larger alpha raises AUROC",
    "3b": "larger alpha lowers accuracy (trade-off)",
    "4": "without L_LC, Logit MixOE has lower AUROC than MixOE",
    "5a": "adaptive L_LC keeps more ID accuracy than fixed L_LC",
    "5b": "adaptive L_LC still raises AUROC over no L_LC",
}


def paired_effect(a: pd.Series, b: pd.Series, sign: int) -> dict:
    """Mean and 95% t-interval of a - b over the seeds both have; ``sign`` +1 when the
    claim predicts a > b, -1 when it predicts a < b."""
    d = (a - b).dropna()
    n = len(d)
    mean = float(d.mean()) if n else np.nan
    if n < 2:
        lo = hi = np.nan
    else:
        half = stats.t.ppf(0.975, n - 1) * float(d.std(ddof=1)) / np.sqrt(n)
        lo, hi = mean - half, mean + half
    outcome = "0"
    if n >= 2 and (lo > 0 or hi < 0):
        outcome = "+" if (lo > 0) == (sign > 0) else "-"
    return {"n_seeds": n, "effect": mean, "ci_low": lo, "ci_high": hi, "outcome": outcome}


def verdict(outcomes) -> str:
    """The RULE: supported / refuted / inconclusive from the tests' outcomes."""
    outcomes = list(outcomes)
    plus, minus, n = outcomes.count("+"), outcomes.count("-"), len(outcomes)
    if n and plus > n / 2 and minus == 0:
        return "supported"
    if n and minus > n / 2 and plus == 0:
        return "refuted"
    return "inconclusive"


def _by_seed(df: pd.DataFrame, value: str, **where) -> pd.Series:
    sel = df
    for k, v in where.items():
        sel = sel[np.isclose(sel[k], v)] if k == "alpha" else sel[sel[k] == v]
    return sel.set_index("seed")[value]


def claim_tests(results: pd.DataFrame, norms: pd.DataFrame | None = None,
                bn: str | None = None) -> pd.DataFrame:
    """One row per paired test of every claim, protocol and score (module doc), under
    regime ``bn`` (default: the one most MixOE / Logit MixOE rows share)."""
    mix = results[results["method"].isin(["mixoe", "logit_mixoe"])]
    if mix.empty:
        return pd.DataFrame(columns=["claim", "protocol", "score", "metric", "n_seeds", "effect",
                                     "ci_low", "ci_high", "outcome", "statement"])
    bn = bn or _main_bn(mix)
    mix = mix[mix["bn"] == bn]
    rows = []
    methods = sorted(mix["method"].unique())
    alphas = sorted(mix["alpha"].dropna().unique())
    modes = sorted(m for m in mix["lc_mode"].dropna().unique() if m not in ("", "fixed"))
    for (protocol, score), df in mix.groupby(["protocol", "score"]):
        def test(claim, metric, sign, sel_a, sel_b, **ctx):
            rows.append({"claim": claim, "protocol": protocol, "score": score, "metric": metric,
                         **ctx, **paired_effect(_by_seed(df, metric, **sel_a),
                                                _by_seed(df, metric, **sel_b), sign)})
        for m in methods:
            for al in alphas:
                ctx = {"method": m, "alpha": al, "compared": "w/ L_LC - without"}
                lc, no = {"method": m, "alpha": al, "variant": "lc-fixed"}, \
                         {"method": m, "alpha": al, "variant": "no-lc"}
                test("1a", "auroc", +1, lc, no, **ctx)
                test("1b", "fpr95", -1, lc, no, **ctx)
                for mode in modes:
                    ad = {"method": m, "alpha": al, "variant": f"lc-{mode}"}
                    test("5a", "accuracy", +1, ad, lc, method=m, alpha=al, mode=mode,
                         compared=f"L_LC {mode} - L_LC fixed")
                    test("5b", "auroc", +1, ad, no, method=m, alpha=al, mode=mode,
                         compared=f"L_LC {mode} - without")
            if len(alphas) >= 2:
                hi, lo = {"method": m, "alpha": alphas[-1], "variant": "lc-fixed"}, \
                         {"method": m, "alpha": alphas[0], "variant": "lc-fixed"}
                ctx = {"method": m, "compared": f"alpha {alphas[-1]:g} - alpha {alphas[0]:g}"}
                test("3a", "auroc", +1, hi, lo, **ctx)
                test("3b", "accuracy", -1, hi, lo, **ctx)
        if {"mixoe", "logit_mixoe"} <= set(methods):
            for al in alphas:
                test("4", "auroc", -1, {"method": "logit_mixoe", "alpha": al, "variant": "no-lc"},
                     {"method": "mixoe", "alpha": al, "variant": "no-lc"}, alpha=al,
                     compared="Logit MixOE - MixOE")
    if norms is not None and len(norms):
        rows += _norm_tests(norms[norms["bn"] == bn], methods, alphas)
    out = pd.DataFrame(rows)
    out["statement"] = out["claim"].map(CLAIMS)
    return out


def _norm_tests(norms: pd.DataFrame, methods, alphas) -> list:
    """Claim 2 on the mean logit norm of the OOD images: near (held-out classes, the
    ``holdout`` protocol) and far (the ``paper`` protocol's images)."""
    rows = []
    for protocol, col in (("holdout", "ood_norm_mean"), ("paper", "far_norm_mean")):
        if col not in norms:
            continue
        for m in methods:
            for al in alphas:
                lc = _by_seed(norms, col, method=m, alpha=al, variant="lc-fixed")
                no = _by_seed(norms, col, method=m, alpha=al, variant="no-lc")
                id_effect = paired_effect(_by_seed(norms, "id_norm_mean", method=m, alpha=al,
                                                   variant="lc-fixed"),
                                          _by_seed(norms, "id_norm_mean", method=m, alpha=al,
                                                   variant="no-lc"), -1)
                rows.append({"claim": "2", "protocol": protocol, "score": "l2norm",
                             "metric": "ood_norm_mean", "method": m, "alpha": al,
                             "compared": "w/ L_LC - without", **paired_effect(lc, no, -1),
                             "id_norm_effect": id_effect["effect"]})
    return rows


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and number of seeds per (method, variant, regime, alpha, protocol, score)."""
    from .experiments import mean_std_over_seeds
    return mean_std_over_seeds(results, ["method", "variant", "model", "bn", "alpha", "protocol",
                                         "score"])


def _main_bn(df: pd.DataFrame) -> str:
    """The regime most rows share (a study adds a few ``separate`` rows as an artifact)."""
    return df["bn"].value_counts().idxmax()


def verdicts(tests: pd.DataFrame) -> pd.DataFrame:
    """One verdict per (claim, protocol, score), with its counts and seeds. Tests whose
    runs are not there yet (no seed) are left out and counted as ``missing``."""
    rows = []
    if tests.empty:
        return pd.DataFrame(columns=["claim", "mode", "statement", "protocol", "score", "tests",
                                     "plus", "minus", "missing", "seeds", "mean_effect", "verdict"])
    for (claim, protocol, score), t in tests.groupby(["claim", "protocol", "score"], sort=True):
        parts = t.groupby("mode") if "mode" in t and t["mode"].notna().any() else [(None, t)]
        for mode, tt in parts:
            missing = int((tt["n_seeds"] == 0).sum())
            tt = tt[tt["n_seeds"] > 0]
            if tt.empty:
                continue
            seeds = tt["n_seeds"]
            rows.append({"claim": claim, "mode": mode or "", "statement": CLAIMS[claim],
                         "protocol": protocol, "score": score, "tests": len(tt),
                         "plus": int((tt["outcome"] == "+").sum()),
                         "minus": int((tt["outcome"] == "-").sum()), "missing": missing,
                         "seeds": f"{seeds.min()}" if seeds.min() == seeds.max()
                         else f"{seeds.min()}-{seeds.max()}",
                         "mean_effect": float(tt["effect"].mean()),
                         "verdict": verdict(tt["outcome"])})
    return pd.DataFrame(rows)


def write_claims(results_dir) -> dict:
    """claims_tests.csv, claims_verdicts.csv and claims.md from results.csv / norms.csv."""
    results_dir = Path(results_dir)
    results = pd.read_csv(results_dir / "results.csv")
    norms_path = results_dir / "norms.csv"
    norms = pd.read_csv(norms_path) if norms_path.is_file() else None
    tests = claim_tests(results, norms)
    v = verdicts(tests)
    paths = {"tests": results_dir / "claims_tests.csv", "verdicts": results_dir / "claims_verdicts.csv",
             "md": results_dir / "claims.md"}
    atomic_write_text(paths["tests"], tests.to_csv(index=False))
    atomic_write_text(paths["verdicts"], v.to_csv(index=False))
    mix = results[results["method"].isin(["mixoe", "logit_mixoe"])]
    atomic_write_text(paths["md"], verdict_markdown(v, _main_bn(mix) if len(mix) else "none"))
    return {k: str(p) for k, p in paths.items()}


def verdict_markdown(v: pd.DataFrame, bn: str, score: str = "msp") -> str:
    """The verdicts of ``score`` (and claim 2's norm) as a Markdown table, near-OOD
    (``holdout``) beside far-OOD (``paper``)."""
    sel = v[(v["score"] == score) | (v["claim"] == "2")]
    lines = [f"BatchNorm regime `{bn}`; score {score.upper()} (claim 2: mean OOD logit norm). "
             "Each cell: verdict (tests with '+' / '-' of all tests; seeds per test).", "",
             "| claim | statement | near-OOD (holdout) | far-OOD (paper) |", "|---|---|---|---|"]
    for (claim, mode), g in sel.groupby(["claim", "mode"], sort=True):
        cells = []
        for protocol in ("holdout", "paper"):
            r = g[g["protocol"] == protocol]
            if r.empty:
                cells.append("n/a")
                continue
            r = r.iloc[0]
            missing = f"; {r['missing']} not run yet" if r["missing"] else ""
            cells.append(f"{r['verdict']} ({r['plus']}+/{r['minus']}- of {r['tests']}; "
                         f"{r['seeds']} seeds{missing})")
        label = claim + (f" ({mode})" if mode else "")
        lines.append(f"| {label} | {CLAIMS[claim]} | {cells[0]} | {cells[1]} |")
    lines += ["", f"Rule: {RULE}."]
    return "\n".join(lines) + "\n"
