"""Figures of the claims study (study.py, claims.py): axes-level functions (``ax=None``,
return the Axes) and the figure-level ones notebook 07 draws, seaborn style.

Every interval is a 95% t-interval and says over what: the primary effects over the
pretrained models' means (df = models - 1, claims.nested_test); the curves over the units
at each point (n in the legend); a quantity with a single run is drawn as a hollow marker
and labelled "1 run".
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
from scipy import stats

from .claims import MIXING, PRIMARY_WHERE
from .plots import OOD_COLOR, _ax, _PAL, model_color

METHOD_NAMES = {"mixoe": "MixOE", "logit_mixoe": "Logit MixOE"}
#: one colour per (method, L_LC variant); controls in their model colours
VARIANT_STYLE = {"no-lc": ("without L_LC", "o", "-"), "lc-fixed": ("w/ L_LC (eq. 15)", "s", "-"),
                 "lc-outlier-share": ("L_LC outlier-share", "^", "--"),
                 "lc-stop-id": ("L_LC stop-id", "D", "--"), "lc-norm": ("L_LC norm", "v", ":")}
CONTROLS = {"baseline": "Pretrained", "ce": "CE fine-tune", "oe": "OE"}
CONTROL_COLORS = {"Pretrained": _PAL[7], "CE fine-tune": _PAL[5], "OE": _PAL[4]}
VERDICT_COLORS = {"supported": _PAL[2], "refuted": _PAL[3], "no meaningful effect": _PAL[7],
                  "inconclusive": "0.35", "not run yet": "0.6"}


def variant_color(method: str, variant: str):
    """RGB colour of one (method, L_LC variant) line: the model colour (plots.model_color) of
    MixOE / Logit MixOE without or w/ L_LC, darkened (x 0.75, 0.55, 0.35) for the adaptive
    variants outlier-share, stop-id and norm; KeyError for a method not in METHOD_NAMES."""
    base = model_color(METHOD_NAMES[method] + ("" if variant == "no-lc" else " w/ L_LC"))
    shade = {"lc-outlier-share": 0.75, "lc-stop-id": 0.55, "lc-norm": 0.35}.get(variant)
    return base if shade is None else tuple(shade * c for c in base)


def mean_ci(values) -> tuple[float, float, int]:
    """Mean, half-width of the 95% t-interval (NaN for one value) and n."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return np.nan, np.nan, 0
    half = stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
    return float(v.mean()), float(half), n


# ---------------------------------------------------------------------------- primary

def primary_effects(verdicts: pd.DataFrame, ax=None):
    """The primary family as a forest plot: each hypothesis's effect and 95% interval in
    units of its equivalence margin (x = effect / margin; the shaded band is +-1 margin),
    so all endpoints share one axis; the verdict on the right, interim estimates (runs
    still missing) hollow. Labels give n units, models and df."""
    ax = _ax(ax)
    p = verdicts[verdicts["primary"].astype(bool)].reset_index(drop=True)
    y = np.arange(len(p))[::-1]
    ax.axvspan(-1, 1, color="0.92", zorder=0, label="equivalence margin")
    ax.axvline(0, color="0.4", linewidth=0.7)
    for yi, (_, r) in zip(y, p.iterrows()):
        m = float(r["margin"])
        e, lo, hi = r["effect"] / m, r["ci_low"] / m, r["ci_high"] / m
        color = VERDICT_COLORS.get(r["verdict"], "0.3")
        interim = r["verdict"] == "not run yet"
        if np.isfinite(lo):
            ax.plot([lo, hi], [yi, yi], color=color, linewidth=1.6)
        if np.isfinite(e):
            ax.plot([e], [yi], marker="o", markersize=5, color=color,
                    markerfacecolor="white" if interim else color)
        side = "+" if r["predicted"] == "higher" else "-"
        ax.annotate(f"{r['verdict']}" + (f" ({int(r['units_missing'])} missing)" if interim else ""),
                    (1.02, yi), xycoords=("axes fraction", "data"), va="center", fontsize=6.5,
                    color=color)
        ax.annotate(f"predicted {side}", (-0.02, yi - 0.32), xycoords=("axes fraction", "data"),
                    ha="right", va="center", fontsize=5.5, color="0.4")
    labels = [f"{r['hypothesis']}: {r['endpoint'].replace('+', ' & ')}\n"
              f"n={int(r['n'])} units, {int(r['n_models'])} models, df={int(r['df'])}"
              for _, r in p.iterrows()]
    ax.set_yticks(y, labels, fontsize=6.5)
    ax.set_xlabel("effect / equivalence margin (95% CI over pretrained models)", fontsize="small")
    lim = np.nanmax(np.abs(np.r_[p["ci_low"] / p["margin"], p["ci_high"] / p["margin"],
                                 p["effect"] / p["margin"], 1.5]))
    ax.set_xlim(-lim * 1.1, lim * 1.1)
    return ax


def primary_figure(verdicts: pd.DataFrame, title: str = ""):
    """primary_effects as a figure sized to the number of primary hypotheses, under ``title``
    (default: the pre-registered primary tests); returns the Figure."""
    fig, ax = plt.subplots(figsize=(6.2, 0.55 * (verdicts["primary"].astype(bool).sum()) + 1.2),
                           constrained_layout=True)
    primary_effects(verdicts, ax=ax)
    fig.suptitle(title or "Pre-registered primary tests (holdout, MSP; Holm over 7)",
                 fontsize="medium")
    return fig


# ---------------------------------------------------------------------------- alpha

def alpha_curve(results: pd.DataFrame, metric: str = "auroc", ax=None, where=None):
    """``metric`` against alpha (log axis at the study's alphas) for MixOE and Logit MixOE
    without / with L_LC: mean and 95% interval over the units at each alpha (n in the
    legend); the controls (pretrained, CE fine-tune, OE) as horizontal lines with their
    mean and 95% interval in the legend. ``where``: the protocol / OOD set / score / convention (default:
    the primary endpoint's)."""
    ax = _ax(ax)
    r = results
    for k, v in (where or PRIMARY_WHERE).items():
        r = r[r[k] == v]
    mix = r[r["method"].isin(MIXING) & r["variant"].isin(["no-lc", "lc-fixed"])]
    alphas = sorted(mix["alpha"].dropna().unique())
    dodge = iter(np.geomspace(0.93, 1.07, 4))          # the 4 lines side by side at each alpha
    for m in MIXING:
        for variant in ("no-lc", "lc-fixed"):
            d = mix[(mix["method"] == m) & (mix["variant"] == variant)]
            if d.empty:
                continue
            stats_ = [mean_ci(d[np.isclose(d["alpha"], a)][metric]) for a in alphas]
            mean = np.array([s[0] for s in stats_])
            half = np.array([s[1] for s in stats_])
            ns = [s[2] for s in stats_]
            name, marker, ls = VARIANT_STYLE[variant]
            color = variant_color(m, variant)
            ax.errorbar(np.array(alphas) * next(dodge), mean, yerr=np.nan_to_num(half),
                        marker=marker, linestyle=ls,
                        color=color, markersize=4, capsize=2, linewidth=1,
                        label=f"{METHOD_NAMES[m]} {name} (n={min(ns)}-{max(ns)})"
                        if min(ns) != max(ns) else f"{METHOD_NAMES[m]} {name} (n={ns[0]})")
    for method, label in CONTROLS.items():
        d = r[r["method"] == method][metric]
        mean, half, n = mean_ci(d)
        if n == 0:
            continue
        ci = f"± {half:.2g}, " if n > 1 else ""
        ax.axhline(mean, color=CONTROL_COLORS[label], linewidth=1,
                   linestyle="-." if method == "baseline" else "--",
                   label=f"{label} ({mean:.3g} {ci}{n} run{'s' if n > 1 else ''})")
    ax.set_xscale("log")
    if alphas:
        ax.set_xlim(min(alphas) / 1.6, max(alphas) * 1.6)
    ax.set_xticks(alphas, [f"{a:g}" for a in alphas])
    ax.xaxis.set_minor_formatter(mticker.NullFormatter())
    ax.set_xlabel("alpha (log scale)")
    ax.set_ylabel({"auroc": "AUROC", "fpr95": "FPR95", "accuracy": "ID accuracy (%)"}.get(metric, metric))
    return ax


def alpha_figure(results: pd.DataFrame, where=None):
    """AUROC and ID accuracy against alpha (claim 3 and its trade-off), alpha_curve twice."""
    fig, axes = plt.subplots(1, 2, figsize=(2 * 3.6, 4.4), constrained_layout=True)
    for ax, metric in zip(axes, ("auroc", "accuracy")):
        alpha_curve(results, metric, ax=ax, where=where)
        ax.legend(frameon=False, fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1)
    w = where or PRIMARY_WHERE
    fig.suptitle(f"{w['protocol']} / {w['ood_set']}, {w['score'].upper()}: mean and 95% CI "
                 "over units (n per line)", fontsize="small")
    return fig


# ---------------------------------------------------------------------------- controls

def control_effects(verdicts: pd.DataFrame, ax=None, score: str = "msp"):
    """What outlier exposure adds beyond training longer: each method - the CE fine-tune
    (AUROC, ``score``), per OOD set, mean and 95% interval over pretrained models
    (secondary tests: no verdict)."""
    ax = _ax(ax)
    s = verdicts[(~verdicts["primary"].astype(bool)) & (verdicts["endpoint"] == "auroc")
                 & (verdicts["score"] == score) & (verdicts["metric_convention"] == "ours")
                 & verdicts["statement"].str.endswith("- CE fine-tune", na=False)]
    sets = sorted(dict.fromkeys(s["ood_set"]), key=lambda o: (o != "heldout-classes", o))
    names = list(dict.fromkeys(s["statement"]))
    width = 0.8 / max(1, len(sets))
    for j, ood in enumerate(sets):
        d = s[s["ood_set"] == ood].set_index("statement").reindex(names)
        x = np.arange(len(names)) + (j - (len(sets) - 1) / 2) * width
        err = np.vstack([d["effect"] - d["ci_low"], d["ci_high"] - d["effect"]])
        ax.errorbar(x, d["effect"], yerr=np.nan_to_num(err), fmt="o", markersize=3, capsize=2,
                    color=[OOD_COLOR, _PAL[5], _PAL[0]][j % 3], label=ood)
    ax.axhline(0, color="0.5", linewidth=0.6)
    ax.set_xticks(range(len(names)), [control_label(n) for n in names],
                  rotation=30, ha="right", fontsize="x-small")
    ax.set_ylabel("AUROC - AUROC(CE fine-tune)", fontsize="small")
    n = s["n"].max() if len(s) else 0
    ax.set_title(f"minus the CE fine-tune, {score.upper()}: 95% CI over pretrained models "
                 f"(up to n={int(n) if n == n else 0} units)", fontsize="x-small")
    return ax


def control_label(statement: str) -> str:
    """The readable name of a "<method> <variant> - CE fine-tune" contrast ("mixoe no-lc -
    CE fine-tune" -> "MixOE without L_LC"); a statement of another form is kept whole."""
    words = statement.replace(" - CE fine-tune", "").split()
    if len(words) == 1 and words[0] in CONTROLS:
        return CONTROLS[words[0]]
    if len(words) == 2 and words[0] in METHOD_NAMES and words[1] in VARIANT_STYLE:
        return f"{METHOD_NAMES[words[0]]} {VARIANT_STYLE[words[1]][0]}"
    return statement


def control_figure(verdicts: pd.DataFrame, score: str = "msp"):
    """control_effects of ``score`` (MSP by default) as a figure, the OOD-set legend outside on
    the right; returns the Figure."""
    fig, ax = plt.subplots(figsize=(6.0, 3.0), constrained_layout=True)
    control_effects(verdicts, ax=ax, score=score)
    ax.legend(frameon=False, fontsize="x-small", title="OOD set", title_fontsize="x-small",
              loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


# ---------------------------------------------------------------------------- norms

def norm_panel(norms: pd.DataFrame, bins, key, ax=None, parts=("id", "ood", "far_photos_heldout")):
    """Logit-norm histograms of one variant ``key`` = (method, variant), pooled over its
    runs (the count is in the title): ID test filled grey, near-OOD and far-OOD outlines."""
    ax = _ax(ax)
    method, variant = key
    g = norms[(norms["method"] == method) & (norms["variant"] == variant)]
    edges = np.asarray(bins, dtype=float)
    styles = {"id": ("ID test", dict(color="0.55", alpha=0.6)),
              "ood": ("near-OOD (held-out classes)", dict(color=OOD_COLOR, histtype="step")),
              "far_photos_heldout": ("far-OOD (held-out photos)",
                                     dict(color=_PAL[5], histtype="step", linestyle="--"))}
    for part in parts:
        col = f"{part}_norm_hist"
        if col not in g or g[col].isna().all():
            continue
        counts = np.sum([np.array(h.split(), dtype=float) for h in g[col].dropna()], axis=0)
        name, style = styles[part]
        ax.hist(edges[1:-1], bins=edges[1:], weights=counts[1:] / max(counts.sum(), 1),
                label=name, **style)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(mticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(mticker.NullFormatter())
    label = CONTROLS.get(method) or f"{METHOD_NAMES[method]}\n{VARIANT_STYLE[variant][0]}"
    ax.set_title(f"{label} ({len(g)} run{'s' if len(g) != 1 else ''})", fontsize="x-small")
    ax.set_xlabel("||z|| (log scale)", fontsize="small")
    return ax


def norm_figure(norms: pd.DataFrame, bins, alpha: float = 1.0):
    """Claim 2: norm_panel for the controls and every variant at ``alpha``, one shared log
    axis, runs pooled over units (the count in each title)."""
    n = norms[np.isclose(norms["alpha"].fillna(alpha), alpha)]
    keys = [(m, "no-lc") for m in CONTROLS if (n["method"] == m).any()]
    keys += [(m, v) for m in MIXING for v in VARIANT_STYLE
             if ((n["method"] == m) & (n["variant"] == v)).any()]
    cols = min(4, len(keys))
    rows = int(np.ceil(len(keys) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols + 1.8, 2.1 * rows), sharex=True,
                             sharey=True, squeeze=False, constrained_layout=True)
    for ax, key in zip(axes.flat, keys):
        norm_panel(n, bins, key, ax=ax)
    hists = [np.array(h.split(), dtype=float) for c in n.columns if c.endswith("_norm_hist")
             for h in n[c].dropna()]
    used = np.flatnonzero(np.sum(hists, axis=0)) if hists else np.array([1, 2])
    edges = np.asarray(bins, dtype=float)
    axes[0, 0].set_xlim(edges[max(used[0], 1)], edges[used[-1] + 1])
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    axes[0, 0].set_ylabel("fraction")
    axes[0, -1].legend(frameon=False, fontsize="x-small", loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle(f"Logit norms at alpha {alpha:g}, runs pooled over units (claim 2, cf. Fig. 3)",
                 fontsize="small")
    return fig
