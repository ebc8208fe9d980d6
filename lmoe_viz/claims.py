"""The claims study's pre-registered analysis: the paper's claims 1-5 (summarised in
docs/guide/paper.md) as one primary family of tests, fixed before the full runs; everything
else is secondary.

Design (study.py). The **unit** of analysis is a (pretrained model, fine-tuning seed)
pair: ``P`` pretrained models (pretraining seeds 0..P-1, split 0), and unit ``u`` fine-tunes
pretrained model ``u mod P`` with seed ``u``, so fine-tuning seeds are nested in pretrained
models. Every variant of a unit starts from the same pretrained model with the same seed,
regime (``bn``), outliers and schedule, so a contrast between two variants is a paired
difference ``d_u``. Methods are pooled with method as a fixed effect: ``d_u`` is the mean of
the per-method differences of unit ``u`` (both methods must be there).

**The test** (``nested_test``) accounts for the nesting: the mean of ``d_u`` per pretrained
model, ``c_p``, then a one-sample t-test over the ``c_p`` (df = P - 1). For a balanced
design this is exactly the test of the fixed effect in the mixed model ``d_pu = mu + b_p +
e_pu`` with a random intercept ``b_p`` per pretrained model (its F-test uses the between-
model mean square, whose df is P - 1); with missing runs the ``c_p`` are unweighted.
Pretraining variance is inside every interval.

**Primary family** (``PRIMARY``): all on the ``holdout`` protocol (ID test vs the held-out
classes: near-OOD), MSP, metric convention ``ours``, the study's regime and outliers:

== ======================================================= ================= ========
H  contrast                                                 predicted         margin
== ======================================================= ================= ========
1  AUROC, w/ L_LC - without, alpha 1, both methods          higher            0.01
2  OOD/ID logit-norm ratio, w/ L_LC - without, alpha 1      lower             0.02
3  slope of AUROC w/ L_LC over ln(alpha), the alpha grid    positive          0.005
4  AUROC, Logit MixOE - MixOE, without L_LC, alpha 1        lower             0.01
5  per adaptive mode (3 tests), alpha 1, both methods:      AUROC higher AND  0.01
   AUROC and ID accuracy, mode - without L_LC               accuracy >= -0.5  0.5 pt
== ======================================================= ================= ========

The norm ratio is mean ||z|| of the near-OOD images over mean ||z|| of the ID test images of
the same model: L_LC shrinks ID norms too, and the claim is that OOD norms shrink more.

**p-values**, all on the two-sided scale. Each test has a support p (the predicted side)
and a refutation p (the other side), and its ``p`` is the smaller of the two. For H1-H4
they are the t-test's one-sided p-values doubled, so ``p`` is the two-sided p. For H5 the
support p is the intersection-union test ``max(p_AUROC higher, p_non-inferiority)`` (the
one-sided p of H0 "accuracy drops by 0.5 point or more", doubled); the refutation p is
Bonferroni over its two ways to fail, ``2 min(p_AUROC lower, p_inferiority)`` (H0
"accuracy drops by less than 0.5 point", doubled). Both are in the verdicts file
(``p_support``, ``p_refute``). **Holm** across the 7 hypotheses at 0.05 (a hypothesis with
runs missing counts as p = 1: the family is always the 7 pre-registered hypotheses; Holm's
adjusted p never rises when another p falls, so a verdict given while others are missing is
conservative: supported or refuted stands, and inconclusive may still become either).
**Equivalence**: two one-sided tests (TOST) against the margin, each one-sided at 0.05, not
doubled (the usual TOST convention: equivalence is shown when the 90% interval lies inside
the margin, while support needs the two-sided 95% one to exclude 0), Holm-adjusted across
the family too (H5: on AUROC only; its accuracy effect and interval are reported beside the
verdict).

**Units per test.** Claims 1, 2, 4 read the core units ``0..N-1`` (df = P - 1); claims 3 and
5 read the extra units ``0..K-1`` only (K <= P: one unit per pretrained model, df = K - 1).
H3's slope is MixOE's own dependence on alpha plus L_LC's: the slope without L_LC and the
difference of the two slopes are secondary rows.

**Verdicts** (``verdict_of``): *not run yet* while any unit of the test's design (unit
``u``: seed ``u``, ``u`` below the tier's count) has no difference for an endpoint of the test
(the interim effect is shown, never a verdict); otherwise *supported* when the Holm-
adjusted p < 0.05 with the effect on the predicted side, *refuted* when on the other side
(H5: AUROC lower, or accuracy shown to drop by more than 0.5 point); *no meaningful effect*
when the equivalence test passes; *inconclusive* otherwise (too few units for the spread).

**Secondary** (reported with unadjusted p, never a verdict): FPR95 and the other scores,
each far-OOD set, per-method splits, each outlier method - the CE fine-tune (what outlier
exposure adds beyond training longer), CE fine-tune - pretrained, the accuracy slope of
claim 3 (the trade-off), MixOE's metric convention, and the pixel-statistics references.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .io import atomic_write_text

LEVEL = 0.05
#: equivalence margins: what counts as no meaningful effect
MARGINS = {"auroc": 0.01, "norm_ratio": 0.02, "auroc_slope": 0.005, "accuracy": 0.5,
           "fpr95": 0.01, "accuracy_slope": 0.5}
MIXING = ("mixoe", "logit_mixoe")
ADAPTIVE_MODES = ("outlier-share", "stop-id", "norm")
#: where every primary endpoint is measured
PRIMARY_WHERE = {"protocol": "holdout", "ood_set": "heldout-classes", "score": "msp",
                 "metric_convention": "ours"}
#: the minimum units per primary test (study.py sizes n = max(this, the power analysis))
MIN_UNITS = {"fashion-mnist": {"core": 10, "extra": 5}, "digits": {"core": 20, "extra": 10}}


@dataclasses.dataclass(frozen=True)
class Hypothesis:
    """One primary test: a contrast between two variants of the same unit."""
    id: str
    claim: str
    statement: str
    endpoint: str          # auroc | norm_ratio | auroc_slope | auroc+accuracy
    contrast: str
    direction: int         # +1: the claim predicts higher, -1 lower
    tier: str              # core (claims 1, 2, 4) or extra (claims 3, 5): which units
    mode: str = ""


PRIMARY = (
    Hypothesis("H1", "1", "L_LC raises AUROC", "auroc", "w/ L_LC - without, alpha 1", +1, "core"),
    Hypothesis("H2", "2", "L_LC lowers the OOD/ID logit-norm ratio", "norm_ratio",
               "w/ L_LC - without, alpha 1", -1, "core"),
    Hypothesis("H3", "3", "with L_LC, AUROC rises with alpha", "auroc_slope",
               "slope over ln(alpha), w/ L_LC", +1, "extra"),
    Hypothesis("H4", "4", "without L_LC, Logit MixOE has lower AUROC than MixOE", "auroc",
               "Logit MixOE - MixOE, without L_LC, alpha 1", -1, "core"),
    *(Hypothesis(f"H5-{m}", "5", f"L_LC ({m}) raises AUROC and keeps ID accuracy (within "
                 "0.5 point)", "auroc+accuracy", f"L_LC {m} - without, alpha 1", +1, "extra", m)
      for m in ADAPTIVE_MODES),
)


# ---------------------------------------------------------------------------- statistics

def nested_test(d: pd.Series, margin: float) -> dict:
    """The test of the module doc on unit differences ``d`` indexed by (pretrain_seed,
    seed): effect, 95% interval, one-sided p-values for higher / lower, and the TOST p
    against ``margin``. Fewer than 2 pretrained models give no test (NaN)."""
    d = d.dropna()
    c = d.groupby(level=0).mean()
    n_models, n = len(c), len(d)
    out = {"n": n, "n_models": n_models, "effect": float(c.mean()) if n_models else np.nan,
           "ci_low": np.nan, "ci_high": np.nan, "p_higher": np.nan, "p_lower": np.nan,
           "p_equiv": np.nan, "df": n_models - 1 if n_models else 0}
    if n_models < 2:
        return out
    df = n_models - 1
    se = float(c.std(ddof=1)) / np.sqrt(n_models)
    half = stats.t.ppf(0.975, df) * se
    out.update(ci_low=out["effect"] - half, ci_high=out["effect"] + half)
    if se == 0:
        e = out["effect"]
        out.update(p_higher=float(e <= 0), p_lower=float(e >= 0),
                   p_equiv=float(abs(e) >= margin))
        return out
    t = out["effect"] / se
    out["p_higher"], out["p_lower"] = float(stats.t.sf(t, df)), float(stats.t.cdf(t, df))
    p_above = stats.t.sf((out["effect"] + margin) / se, df)     # H0: effect <= -margin
    p_below = stats.t.cdf((out["effect"] - margin) / se, df)    # H0: effect >= +margin
    out["p_equiv"] = float(max(p_above, p_below))
    return out


def noninferiority_p(d: pd.Series, margin: float, inferior: bool = False) -> float:
    """One-sided p of H0 "effect <= -margin" (non-inferiority), or with ``inferior`` of H0
    "effect >= -margin" (rejecting it shows a drop larger than the margin)."""
    shifted = nested_test(d + margin, 0.0)
    return shifted["p_lower"] if inferior else shifted["p_higher"]


def holm(p) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN counts as 1)."""
    p = np.nan_to_num(np.asarray(p, dtype=float), nan=1.0)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj


def two_sided(test: dict, direction: int) -> tuple[float, float]:
    """(p of the predicted side, p of the other side), each doubled to the two-sided scale."""
    hi, lo = test["p_higher"], test["p_lower"]
    if not (np.isfinite(hi) and np.isfinite(lo)):       # no test (fewer than 2 models)
        return np.nan, np.nan
    pred, other = (hi, lo) if direction > 0 else (lo, hi)
    return min(1.0, 2 * pred), min(1.0, 2 * other)


# ---------------------------------------------------------------------------- unit values

def _sel(df: pd.DataFrame, **where) -> pd.DataFrame:
    for k, v in where.items():
        df = df[np.isclose(df[k].astype(float), v)] if k == "alpha" else df[df[k] == v]
    return df


def _by_unit(df: pd.DataFrame, value: str) -> pd.Series:
    """``value`` per (pretrain_seed, seed, method)."""
    return df.set_index(["pretrain_seed", "seed", "method"])[value]


def _pooled(diff: pd.Series) -> pd.Series:
    """Per unit, the mean over methods of a per-method difference (both methods needed)."""
    wide = diff.unstack("method")
    wide = wide.dropna()
    return wide.mean(axis=1)


def contrast(rows: pd.DataFrame, value: str, a: dict, b: dict, methods=MIXING) -> pd.Series:
    """Unit differences value(a) - value(b), pooled over ``methods`` (both variants of a
    method from the same unit)."""
    rows = rows[rows["method"].isin(methods)]
    diff = _by_unit(_sel(rows, **a), value) - _by_unit(_sel(rows, **b), value)
    return _pooled(diff.dropna()) if len(methods) > 1 else diff.dropna().droplevel("method")


def method_contrast(rows: pd.DataFrame, value: str, a: dict, b: dict) -> pd.Series:
    """Unit differences between two rows that name their methods in ``a`` / ``b``; against
    the pretrained model (``baseline``), each unit is compared with its own pretrained model."""
    va = _sel(rows, **a).set_index(["pretrain_seed", "seed"])[value]
    if b.get("method") == "baseline":
        vb = _sel(rows, **b).set_index("pretrain_seed")[value]
        d = va - vb.reindex(va.index.get_level_values(0)).to_numpy()
    else:
        d = va - _sel(rows, **b).set_index(["pretrain_seed", "seed"])[value]
    return d.dropna()


def slope(rows: pd.DataFrame, value: str, variant: str, alphas) -> pd.Series:
    """Per unit, the least-squares slope of ``value`` over ln(alpha) for ``variant``, per
    method, pooled over methods (every alpha needed)."""
    r = rows[rows["method"].isin(MIXING) & (rows["variant"] == variant)]
    r = r[r["alpha"].astype(float).round(6).isin([round(float(a), 6) for a in alphas])]
    out = {}
    for key, g in r.groupby(["pretrain_seed", "seed", "method"]):
        if g["alpha"].nunique() == len(alphas):
            x, y = np.log(g["alpha"].astype(float).to_numpy()), g[value].to_numpy()
            out[key] = float(np.polyfit(x, y, 1)[0])
    if not out:         # no complete unit: empty, with the units' index all the same
        return pd.Series(dtype=float, index=pd.MultiIndex.from_tuples(
            [], names=["pretrain_seed", "seed"]))
    s = pd.Series(out, dtype=float)
    s.index = s.index.set_names(["pretrain_seed", "seed", "method"])
    return _pooled(s)


# ---------------------------------------------------------------------------- the plan

def primary_tables(results: pd.DataFrame, norms: pd.DataFrame, alphas) -> dict:
    """The unit-level rows every primary endpoint reads: MSP on the held-out classes (with
    accuracy), and the norm ratio per run."""
    r = _sel(results, **PRIMARY_WHERE)
    n = norms.copy()
    n["norm_ratio"] = n["ood_norm_mean"] / n["id_norm_mean"]
    return {"auroc": r, "norm": n, "alphas": tuple(sorted(float(a) for a in alphas))}


def primary_differences(h: Hypothesis, t: dict) -> dict:
    """{endpoint: unit differences} of hypothesis ``h``."""
    r, n = t["auroc"], t["norm"]
    lc = {"variant": "lc-fixed", "alpha": 1.0}
    no = {"variant": "no-lc", "alpha": 1.0}
    if h.id == "H1":
        return {"auroc": contrast(r, "auroc", lc, no)}
    if h.id == "H2":
        return {"norm_ratio": contrast(n, "norm_ratio", lc, no)}
    if h.id == "H3":
        return {"auroc_slope": slope(r, "auroc", "lc-fixed", t["alphas"])}
    if h.id == "H4":
        return {"auroc": method_contrast(r, "auroc", {"method": "logit_mixoe", **no},
                                         {"method": "mixoe", **no})}
    ad = {"variant": f"lc-{h.mode}", "alpha": 1.0}
    return {"auroc": contrast(r, "auroc", ad, no), "accuracy": contrast(r, "accuracy", ad, no)}


def test_hypothesis(h: Hypothesis, diffs: dict) -> dict:
    """Effect, interval, p on both sides (two-sided scale) and the TOST p of ``h``."""
    key = "auroc" if h.endpoint == "auroc+accuracy" else h.endpoint
    main = nested_test(diffs[key], MARGINS[key])
    p_pred, p_other = two_sided(main, h.direction)
    row = {**main, "p_support": p_pred, "p_refute": p_other}
    if h.endpoint == "auroc+accuracy":
        acc = nested_test(diffs["accuracy"], MARGINS["accuracy"])
        p_noninf = min(1.0, 2 * noninferiority_p(diffs["accuracy"], MARGINS["accuracy"]))
        p_inf = min(1.0, 2 * noninferiority_p(diffs["accuracy"], MARGINS["accuracy"], inferior=True))
        row.update(p_support=max(p_pred, p_noninf), p_refute=min(1.0, 2 * min(p_other, p_inf)),
                   accuracy_effect=acc["effect"], accuracy_ci_low=acc["ci_low"],
                   accuracy_ci_high=acc["ci_high"], n=min(main["n"], acc["n"]))
        if acc["n_models"] < 2:
            row.update(p_support=np.nan, p_refute=np.nan)
    return row


def verdict_of(p_holm: float, predicted_side: bool, p_equiv_holm: float, missing: int) -> str:
    """The verdict rule of the module doc."""
    if missing:
        return "not run yet"
    if p_holm < LEVEL:
        return "supported" if predicted_side else "refuted"
    if p_equiv_holm < LEVEL:
        return "no meaningful effect"
    return "inconclusive"


def design_units(diffs: dict, expected: int) -> dict:
    """``diffs`` restricted to the design's units ``0..expected-1`` (unit ``u`` has seed
    ``u``): a unit outside the design never enters a primary test."""
    return {k: d[d.index.get_level_values("seed") < expected] if len(d) else d
            for k, d in diffs.items()}


def missing_units(diffs: dict, expected: int) -> int:
    """Units ``0..expected-1`` of the design (unit ``u`` has seed ``u``, module doc) without a
    difference in every endpoint of ``diffs``: identities, not a count, so that a unit outside
    the design never stands in for a missing one."""
    seeds = [set(d.dropna().index.get_level_values("seed")) if d.notna().any() else set()
             for d in diffs.values()]
    present = set.intersection(*seeds) if seeds else set()
    return sum(u not in present for u in range(int(expected)))


def primary_verdicts(results: pd.DataFrame, norms: pd.DataFrame, alphas, expected: dict) -> pd.DataFrame:
    """One row per primary hypothesis: n, effect, 95% interval, p, Holm-adjusted p, the
    equivalence p, and the verdict. ``expected``: {tier: number of units of the design};
    a test with fewer complete units is *not run yet*, with the runs still missing."""
    t = primary_tables(results, norms, alphas)
    rows = []
    for h in PRIMARY:
        diffs = design_units(primary_differences(h, t), expected[h.tier])
        r = test_hypothesis(h, diffs)
        r["p"] = float(np.fmin(r["p_support"], r["p_refute"]))
        r["predicted_side"] = bool(r["p_support"] <= r["p_refute"])
        rows.append({"claim": h.claim, "hypothesis": h.id, "statement": h.statement,
                     "primary": True, "endpoint": h.endpoint, "contrast": h.contrast,
                     "mode": h.mode, "predicted": "higher" if h.direction > 0 else "lower",
                     "margin": MARGINS["auroc" if h.endpoint == "auroc+accuracy" else h.endpoint],
                     "units_expected": expected[h.tier],
                     "units_missing": missing_units(diffs, expected[h.tier]), **r})
    df = pd.DataFrame(rows)
    complete = df["units_missing"] == 0
    p = np.where(complete, df["p"], 1.0)
    df["p_holm"] = holm(p)
    df["p_equiv_holm"] = holm(np.where(complete, df["p_equiv"], 1.0))
    df["verdict"] = [verdict_of(ph, side, pe, miss) for ph, side, pe, miss in
                     zip(df["p_holm"], df["predicted_side"], df["p_equiv_holm"], df["units_missing"])]
    return df


# ---------------------------------------------------------------------------- secondary

def secondary_tests(results: pd.DataFrame, norms: pd.DataFrame, alphas) -> pd.DataFrame:
    """Every secondary contrast (module doc), one row each, unadjusted: never a verdict."""
    rows = []
    lc, no = {"variant": "lc-fixed", "alpha": 1.0}, {"variant": "no-lc", "alpha": 1.0}
    keys = ["protocol", "ood_set", "score", "metric_convention"]

    def add(label, endpoint, d, where, direction, **ctx):
        test = nested_test(d, MARGINS.get(endpoint, MARGINS["auroc"]))
        p_pred, p_other = two_sided(test, direction)
        rows.append({"claim": ctx.pop("claim", ""), "hypothesis": "", "statement": label,
                     "primary": False, "endpoint": endpoint,
                     "predicted": {1: "higher", -1: "lower", 0: ""}[direction], **where, **ctx,
                     **test, "p": min(p_pred, p_other) if direction else
                     (min(1.0, 2 * min(test["p_higher"], test["p_lower"]))
                      if test["n_models"] >= 2 else np.nan),
                     "p_holm": np.nan, "verdict": "secondary"})

    trained = results[results["method"] != "reference"]
    for where_vals, r in trained.groupby(keys):
        where = dict(zip(keys, where_vals))
        primary = where == PRIMARY_WHERE
        metrics = (("auroc", +1), ("fpr95", -1))
        for metric, sign in metrics:
            if not (primary and metric == "auroc"):
                add("L_LC effect, both methods", metric, contrast(r, metric, lc, no), where, sign,
                    claim="1", contrast="w/ L_LC - without, alpha 1")
            for m in MIXING:
                add(f"L_LC effect, {m}", metric, contrast(r, metric, lc, no, methods=(m,)), where,
                    sign, claim="1", contrast="w/ L_LC - without, alpha 1", method=m)
            if not (primary and metric == "auroc"):
                add("Logit MixOE - MixOE without L_LC", metric,
                    method_contrast(r, metric, {"method": "logit_mixoe", **no},
                                    {"method": "mixoe", **no}), where, -sign, claim="4",
                    contrast="Logit MixOE - MixOE, alpha 1")
            for m, v in (("oe", None), ("mixoe", "no-lc"), ("logit_mixoe", "no-lc"),
                         ("mixoe", "lc-fixed"), ("logit_mixoe", "lc-fixed")):
                a = {"method": m} if v is None else {"method": m, "variant": v, "alpha": 1.0}
                add(f"{m}{'' if v is None else ' ' + v} - CE fine-tune", metric,
                    method_contrast(r, metric, a, {"method": "ce"}), where, sign,
                    contrast="outlier exposure beyond training longer")
            add("CE fine-tune - pretrained", metric,
                method_contrast(r, metric, {"method": "ce"}, {"method": "baseline"}), where, 0,
                contrast="what training longer does")
        if primary:
            add("accuracy slope over ln(alpha), w/ L_LC (trade-off)", "accuracy_slope",
                slope(r, "accuracy", "lc-fixed", alphas), where, -1, claim="3",
                contrast="slope over ln(alpha)")
            with_lc, without = (slope(r, "auroc", v, alphas) for v in ("lc-fixed", "no-lc"))
            add("AUROC slope over ln(alpha), without L_LC (MixOE's own)", "auroc_slope", without,
                where, 0, claim="3", contrast="slope over ln(alpha), without L_LC")
            add("AUROC slope over ln(alpha), w/ L_LC - without", "auroc_slope",
                with_lc - without, where, +1, claim="3", contrast="slope w/ L_LC - slope without")
            for m in MIXING:
                add(f"L_LC effect on ID accuracy, {m}", "accuracy",
                    contrast(r, "accuracy", lc, no, methods=(m,)), where, 0, claim="1",
                    contrast="w/ L_LC - without, alpha 1", method=m)
    n = norms.copy()
    for part in [c[: -len("_norm_mean")] for c in n.columns if c.endswith("_norm_mean")]:
        if part == "id":
            continue
        n["ratio"] = n[f"{part}_norm_mean"] / n["id_norm_mean"]
        where = {"protocol": "holdout" if part == "ood" else "far",
                 "ood_set": "heldout-classes" if part == "ood" else part[len("far_"):].replace("_", "-"),
                 "score": "l2norm", "metric_convention": ""}
        for m in MIXING:
            add(f"norm ratio, L_LC effect, {m}", "norm_ratio",
                contrast(n, "ratio", lc, no, methods=(m,)), where, -1, claim="2", method=m,
                contrast="w/ L_LC - without, alpha 1")
        if part != "ood":
            add("norm ratio, L_LC effect, both methods", "norm_ratio", contrast(n, "ratio", lc, no),
                where, -1, claim="2", contrast="w/ L_LC - without, alpha 1")
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- files

VERDICT_COLUMNS = ["claim", "hypothesis", "statement", "primary", "endpoint", "contrast", "mode",
                   "protocol", "ood_set", "score", "metric_convention", "method", "predicted",
                   "n", "n_models", "df", "effect", "ci_low", "ci_high", "p", "p_holm",
                   "p_support", "p_refute", "p_equiv", "p_equiv_holm", "margin", "accuracy_effect", "accuracy_ci_low",
                   "accuracy_ci_high", "units_expected", "units_missing", "verdict"]


def claim_table(results: pd.DataFrame, norms: pd.DataFrame, alphas, expected: dict) -> pd.DataFrame:
    """The primary rows, then the secondary ones, in VERDICT_COLUMNS."""
    prim = primary_verdicts(results, norms, alphas, expected)
    for k, v in PRIMARY_WHERE.items():
        prim[k] = v
    sec = secondary_tests(results, norms, alphas)
    out = pd.concat([prim, sec], ignore_index=True)
    for col in VERDICT_COLUMNS:
        if col not in out:
            out[col] = np.nan
    return out[VERDICT_COLUMNS]


def write_claims(results_dir, alphas, expected: dict, preset: str = "") -> dict:
    """claims_verdicts.csv and claims.md from results.csv / norms.csv in ``results_dir``."""
    results_dir = Path(results_dir)
    results = pd.read_csv(results_dir / "results.csv", low_memory=False)
    norms = pd.read_csv(results_dir / "norms.csv")
    table = claim_table(results, norms, alphas, expected)
    paths = {"verdicts": results_dir / "claims_verdicts.csv", "md": results_dir / "claims.md"}
    atomic_write_text(paths["verdicts"], table.to_csv(index=False))
    atomic_write_text(paths["md"], verdict_markdown(table, preset))
    return {k: str(p) for k, p in paths.items()}


def _fmt(v, digits=4) -> str:
    """Fixed decimals; scientific below what they can show."""
    if pd.isna(v):
        return ""
    return f"{v:.1e}" if 0 < abs(v) < 10 ** -digits else f"{v:.{digits}f}"


def verdict_cell(r) -> str:
    """``supported`` / ``not run yet (12 units missing)`` / ...: the verdict with its caveat."""
    if r["verdict"] == "not run yet":
        return f"not run yet ({int(r['units_missing'])} of {int(r['units_expected'])} units missing)"
    return r["verdict"]


def effect_text(r) -> str:
    """``effect [95% CI]`` of a verdicts row; for H5 also the ID accuracy effect (points) and
    its interval, which its verdict reads only through non-inferiority."""
    if pd.isna(r["effect"]):
        return ""
    eff = f"{_fmt(r['effect'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"
    if r["endpoint"] == "auroc+accuracy" and not pd.isna(r["accuracy_effect"]):
        ci = "" if pd.isna(r["accuracy_ci_low"]) else \
            f" [{r['accuracy_ci_low']:+.2f}, {r['accuracy_ci_high']:+.2f}]"
        eff += f"; acc. {r['accuracy_effect']:+.2f}{ci} pt"
    return eff


def primary_markdown(table: pd.DataFrame) -> str:
    """The primary family as a Markdown table: effect, 95% CI, p, Holm p, n, verdict."""
    p = table[table["primary"] == True]   # noqa: E712 - a column of bools read back from CSV
    lines = ["| H | claim | contrast (holdout, MSP) | n (models) | effect [95% CI] | p | p Holm "
             "| verdict |", "|---|---|---|---|---|---|---|---|"]
    for _, r in p.iterrows():
        lines.append(f"| {r['hypothesis']} | {r['statement']} | {r['contrast']}, {r['predicted']}"
                     f" | {int(r['n'])} ({int(r['n_models'])}) | {effect_text(r)} | {_fmt(r['p'], 3)} | "
                     f"{'' if r['verdict'] == 'not run yet' else _fmt(r['p_holm'], 3)} | {verdict_cell(r)} |")
    return "\n".join(lines) + "\n"


def verdict_markdown(table: pd.DataFrame, preset: str = "") -> str:
    """The text of claims.md: a paragraph stating the test, the p-values, Holm and the equivalence
    rule (module doc), naming ``preset`` when given, then the primary_markdown table."""
    head = (f"Pre-registered primary family{' (' + preset + ')' if preset else ''}: "
            "`lmoe_viz/claims.py`. Effects are means of unit differences (a unit = a "
            "pretrained model and a fine-tuning seed), tested over the pretrained models' "
            "means (df = models - 1); p = the smaller of the support and refutation p, two-sided "
            "scale (H1-H4: the two-sided p; H5: support = intersection-union with accuracy "
            "non-inferiority within 0.5 point, refutation = AUROC lower or accuracy inferior); "
            "Holm over the 7 hypotheses at 0.05; 'no meaningful effect' = equivalence (TOST) "
            "within the margin, Holm-adjusted. Interim estimates of tests with runs missing "
            "carry no verdict.\n\n")
    return head + primary_markdown(table)


def side_by_side_markdown(tables: dict) -> str:
    """The primary verdicts of several presets side by side ({preset: claims_verdicts table}):
    per hypothesis and preset, the effect with its 95% interval (H5: and accuracy's), the
    Holm-adjusted p, n units (pretrained models) and the verdict."""
    presets = list(tables)
    head = "| H | claim | " + " | ".join(presets) + " |"
    lines = [head, "|---|---|" + "---|" * len(presets)]
    prim = {p: t[t["primary"].astype(bool)].set_index("hypothesis") for p, t in tables.items()}
    for h in PRIMARY:
        cells = []
        for p in presets:
            if h.id not in prim[p].index:
                cells.append("")
                continue
            r = prim[p].loc[h.id]
            eff = effect_text(r)
            eff = eff + ", " if eff else ""
            holm_p = "" if r["verdict"] == "not run yet" else f"p Holm {_fmt(r['p_holm'], 3)}, "
            cells.append(f"**{verdict_cell(r)}**: {eff}{holm_p}n {int(r['n'])} ({int(r['n_models'])})")
        lines.append(f"| {h.id} | {h.statement} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
