"""How many units the claims study needs: a power analysis on a pilot, Holm-aware.

For each primary hypothesis (claims.PRIMARY) the pilot's unit differences give the spread
of the pretrained models' means, which the test of claims.nested_test works on:

* with two or more units on some pretrained model, a one-way analysis of variance splits it
  into the between-model variance ``s_b^2`` and the within-model variance ``s_w^2``;
  a mean over ``S`` units per model then has variance ``s_b^2 + s_w^2 / S``;
* with one unit per model they cannot be split: the whole variance is taken as between
  models (more units per model then buy nothing: the conservative reading).

The number of pretrained models ``P`` needed is the smallest ``P >= 2`` whose t-test
(df = P - 1) reaches ``POWER`` against an effect the size of the equivalence margin, at
level 0.05 / 7 two-sided (Holm's first step over the 7 hypotheses: the conservative
bound; later steps test at a larger level). H5 needs both parts: the AUROC effect, and
accuracy non-inferiority (one-sided, at half that level) when the true accuracy effect is
0. The units needed are ``P * S``; the design takes ``max(minimum, needed)``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .claims import LEVEL, MARGINS, MIN_UNITS, PRIMARY, primary_differences, primary_tables

POWER = 0.8
MAX_MODELS = 200


def variance_components(d: pd.Series) -> dict:
    """Between- and within-model variances of unit differences indexed by (model, seed)."""
    d = d.dropna()
    groups = [g.to_numpy() for _, g in d.groupby(level=0)]
    sizes = np.array([len(g) for g in groups])
    if len(groups) < 2:
        return {"s_b2": np.nan, "s_w2": np.nan, "split": False, "models": len(groups), "units": len(d)}
    means = np.array([g.mean() for g in groups])
    if (sizes >= 2).any():
        within = sum(((g - g.mean()) ** 2).sum() for g in groups) / max(1, (sizes - 1).sum())
        between = max(0.0, float(np.var(means, ddof=1)) - within * float(np.mean(1 / sizes)))
        return {"s_b2": between, "s_w2": float(within), "split": True, "models": len(groups),
                "units": len(d)}
    return {"s_b2": float(np.var(means, ddof=1)), "s_w2": 0.0, "split": False,
            "models": len(groups), "units": len(d)}


def t_power(effect: float, sd_mean: float, models: int, level: float, sides: int = 2) -> float:
    """Power of the one-sample t-test over ``models`` means of sd ``sd_mean``."""
    df = models - 1
    if df < 1 or not np.isfinite(sd_mean):
        return np.nan
    if sd_mean == 0:
        return 1.0
    ncp = effect / (sd_mean / np.sqrt(models))
    crit = stats.t.ppf(1 - level / sides, df)
    return float(stats.nct.sf(crit, df, ncp) + (stats.nct.cdf(-crit, df, ncp) if sides == 2 else 0))


def models_needed(effect: float, comps: dict, units_per_model: int, level: float,
                  sides: int = 2) -> int | None:
    """Smallest number of pretrained models reaching POWER (None: not within MAX_MODELS or
    no estimate)."""
    if not np.isfinite(comps["s_b2"]):
        return None
    sd = float(np.sqrt(comps["s_b2"] + comps["s_w2"] / units_per_model))
    for p in range(2, MAX_MODELS + 1):
        if t_power(effect, sd, p, level, sides) >= POWER:
            return p
    return None


def power_analysis(results: pd.DataFrame, norms: pd.DataFrame, alphas, preset: str,
                   units_per_model: int = 2) -> pd.DataFrame:
    """One row per primary hypothesis: the pilot's units and spread, the models and units
    needed, the minimum, and the design's n = max(minimum, needed)."""
    t = primary_tables(results, norms, alphas)
    level = LEVEL / len(PRIMARY)
    mins = MIN_UNITS.get(preset, {"core": 10, "extra": 5})
    rows = []
    for h in PRIMARY:
        diffs = primary_differences(h, t)
        parts = [("auroc" if h.endpoint == "auroc+accuracy" else h.endpoint, MARGINS, 2)]
        if h.endpoint == "auroc+accuracy":
            parts.append(("accuracy", MARGINS, 1))
        needed, detail = [], []
        for key, margins, sides in parts:
            comps = variance_components(diffs[key])
            lv = level if sides == 2 else level / 2
            p = models_needed(margins[key], comps, units_per_model, lv, sides)
            needed.append(p)
            detail.append({"endpoint": key, "pilot_units": comps["units"], "pilot_models": comps["models"],
                           "sd_between": np.sqrt(comps["s_b2"]) if np.isfinite(comps["s_b2"]) else np.nan,
                           "sd_within": np.sqrt(comps["s_w2"]) if np.isfinite(comps["s_w2"]) else np.nan,
                           "components_split": comps["split"], "margin": margins[key],
                           "models_needed": p})
        minimum = mins[h.tier]
        known = [p for p in needed if p is not None]
        estimate = None if len(known) < len(needed) else max(known) * units_per_model
        for dct in detail:
            rows.append({"hypothesis": h.id, "tier": h.tier, **dct,
                         "units_per_model": units_per_model, "level": level,
                         "units_needed": estimate, "minimum": minimum,
                         "n_design": max(minimum, estimate or 0) if estimate else minimum,
                         "note": "" if estimate else "no estimate from the pilot: the minimum"})
    return pd.DataFrame(rows)


def power_markdown(df: pd.DataFrame) -> str:
    """power_analysis's table as Markdown, one row per hypothesis and endpoint: the pilot's units
    and spread (sd within ``not split`` when it could not be separated), the models and units
    needed, the minimum and the design's n."""
    lines = ["| H | endpoint | pilot units (models) | sd between | sd within | margin | models "
             "needed | units needed | minimum | n |", "|---|---|---|---|---|---|---|---|---|---|"]
    f = lambda v: "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.3g}"  # noqa: E731
    for _, r in df.iterrows():
        lines.append(f"| {r['hypothesis']} | {r['endpoint']} | {r['pilot_units']} ({r['pilot_models']}) "
                     f"| {f(r['sd_between'])} | {f(r['sd_within']) if r['components_split'] else 'not split'} "
                     f"| {r['margin']:g} | {'' if pd.isna(r['models_needed']) else int(r['models_needed'])} "
                     f"| {'' if pd.isna(r['units_needed']) else int(r['units_needed'])} | {r['minimum']} "
                     f"| {r['n_design']} |")
    return "\n".join(lines) + "\n"
