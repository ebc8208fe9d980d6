"""The pre-registered analysis (claims.py) on synthetic study results whose effects are known,
its statistics against independent oracles, and the power analysis (power.py)."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lmoe_viz import claims as C
from lmoe_viz import power as W

ALPHAS = (0.3, 1.0, 3.0)
EXPECTED = {"core": 10, "extra": 5}


def _results(units=10, models=5, lc=0.03, lmix=-0.02, slope=0.01, mode_acc=0.0, noise=0.002,
             model_sd=0.004, seed=0):
    """results.csv / norms.csv rows of a study with known effects: L_LC adds ``lc`` AUROC,
    Logit MixOE without L_LC ``lmix`` against MixOE, AUROC w/ L_LC rises ``slope`` per ln(alpha),
    adaptive modes add ``lc`` AUROC and ``mode_acc`` accuracy; each pretrained model shifts its
    units by N(0, model_sd), each run adds N(0, noise)."""
    rng = np.random.default_rng(seed)
    shift = rng.normal(0, model_sd, models)
    rows, norms = [], []
    for u in range(units):
        p = u % models
        variants = [("ce", "no-lc", np.nan), ("oe", "no-lc", np.nan)]
        variants += [(m, v, a) for m in C.MIXING for a in ALPHAS for v in ("no-lc", "lc-fixed")]
        if u < 5:
            variants += [(m, f"lc-{mode}", 1.0) for m in C.MIXING for mode in C.ADAPTIVE_MODES]
        for method, variant, alpha in variants:
            auroc = 0.70 + shift[p]
            if variant != "no-lc":
                auroc += lc
            if variant == "lc-fixed":
                auroc += slope * np.log(alpha)
            if method == "logit_mixoe" and variant == "no-lc":
                auroc += lmix
            acc = 90.0 + (mode_acc if variant.startswith("lc-") and variant != "lc-fixed" else 0.0)
            base = {"run": f"p{p}/{method}_{variant}_{alpha}_s{u}", "method": method,
                    "variant": variant, "alpha": alpha, "seed": u, "pretrain_seed": p,
                    "lc_mode": variant[3:] if variant != "no-lc" else ""}
            for score in ("msp", "energy"):
                rows.append({**base, "protocol": "holdout", "ood_set": "heldout-classes",
                             "score": score, "metric_convention": "ours",
                             "accuracy": acc + rng.normal(0, 0.05),
                             "auroc": auroc + rng.normal(0, noise), "fpr95": 0.5})
            ratio = 0.8 - (0.05 if variant != "no-lc" else 0.0)
            norms.append({**base, "id_norm_mean": 10.0, "ood_norm_mean": 10 * ratio + rng.normal(0, 0.01),
                          "far_photos_heldout_norm_mean": 5.0})
    return pd.DataFrame(rows), pd.DataFrame(norms)


def _verdicts(res, norms, expected=EXPECTED):
    v = C.primary_verdicts(res, norms, ALPHAS, expected)
    return v.set_index("hypothesis")


def test_nested_test_is_the_t_test_over_the_pretrained_models_means():
    idx = pd.MultiIndex.from_tuples([(0, 0), (0, 5), (1, 1), (1, 6), (2, 2), (3, 3)])
    d = pd.Series([0.010, 0.014, 0.002, 0.004, 0.020, -0.001], index=idx)
    got = C.nested_test(d, 0.01)
    means = np.array([0.012, 0.003, 0.020, -0.001])             # by hand
    t = stats.ttest_1samp(means, 0.0)
    ci = t.confidence_interval(0.95)
    assert got["n"] == 6 and got["n_models"] == 4 and got["df"] == 3
    assert got["effect"] == pytest.approx(means.mean())
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert min(1, 2 * min(got["p_higher"], got["p_lower"])) == pytest.approx(t.pvalue)
    # TOST against 0.01: the larger of the two one-sided p-values
    lo = stats.ttest_1samp(means, -0.01, alternative="greater").pvalue
    hi = stats.ttest_1samp(means, 0.01, alternative="less").pvalue
    assert got["p_equiv"] == pytest.approx(max(lo, hi))
    one = C.nested_test(d.loc[[0]], 0.01)                       # one pretrained model: no test
    assert one["n_models"] == 1 and np.isnan(one["p_higher"]) and np.isnan(one["ci_low"])


def test_holm_by_hand():
    assert C.holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert C.holm([np.nan, 0.01]).tolist() == pytest.approx([1.0, 0.02])


def test_known_effects_give_the_pre_registered_verdicts():
    v = _verdicts(*_results())
    assert v.loc["H1", "verdict"] == "supported" and v.loc["H1", "effect"] == pytest.approx((0.03 + 0.05) / 2, abs=0.003)  # Logit MixOE: +0.02 more
    assert v.loc["H2", "verdict"] == "supported" and v.loc["H2", "effect"] == pytest.approx(-0.05, abs=0.005)
    assert v.loc["H3", "verdict"] == "supported"
    assert v.loc["H4", "verdict"] == "supported"                   # Logit MixOE lower, as claimed
    assert (v.loc[[f"H5-{m}" for m in C.ADAPTIVE_MODES], "verdict"] == "supported").all()
    assert (v["p_holm"] >= v["p"] - 1e-15).all() and len(v) == 7
    assert (v.loc["H1", "n"], v.loc["H1", "n_models"]) == (10, 5)


def test_opposite_effects_are_refuted_and_null_effects_are_no_meaningful_effect():
    v = _verdicts(*_results(lc=0.0, lmix=0.0, slope=-0.01, noise=0.0005, model_sd=0.0005))
    assert v.loc["H1", "verdict"] == "no meaningful effect"      # 0 within +-0.01
    assert v.loc["H4", "verdict"] == "no meaningful effect"
    assert v.loc["H3", "verdict"] == "refuted"                   # AUROC falls with alpha
    v = _verdicts(*_results(lmix=+0.03))
    assert v.loc["H4", "verdict"] == "refuted"                   # Logit MixOE higher
    # an adaptive mode that costs 2 points of accuracy fails non-inferiority: refuted
    v = _verdicts(*_results(mode_acc=-2.0))
    assert (v.loc[[f"H5-{m}" for m in C.ADAPTIVE_MODES], "verdict"] == "refuted").all()
    # too much spread for the units: inconclusive, neither supported nor equivalent
    v = _verdicts(*_results(lc=0.005, noise=0.05, model_sd=0.05))
    assert v.loc["H1", "verdict"] == "inconclusive"


def test_missing_runs_are_not_run_yet_with_their_count_and_count_as_p_one_in_holm():
    res, norms = _results()
    cut = res[~((res.seed == 9) & (res.method == "logit_mixoe"))]    # unit 9 incomplete
    v = _verdicts(cut, norms)
    assert v.loc["H1", "verdict"] == "not run yet" and v.loc["H1", "units_missing"] == 1
    assert v.loc["H1", "p_holm"] == 1.0 and not np.isnan(v.loc["H1", "effect"])   # interim shown
    assert v.loc["H3", "verdict"] == "supported"                  # its 5 units are complete
    # the family stays the 7 pre-registered hypotheses: the 3 incomplete ones rank last
    assert v.loc["H3", "p_holm"] >= 4 * v.loc["H3", "p"]
    none = _verdicts(res[res.method == "ce"], norms[norms.method == "ce"])
    assert set(none["verdict"]) == {"not run yet"} and (none["units_missing"] == none["units_expected"]).all()


def test_a_unit_outside_the_design_never_stands_in_for_a_missing_one():
    res, norms = _results(units=11)            # units 0..10; the design's core is 0..9
    v = _verdicts(res[res.seed != 7], norms)   # 10 units, but unit 7 of the design is absent
    assert v.loc["H1", "n"] == 9 and v.loc["H1", "units_missing"] == 1   # unit 10 is not in it
    assert v.loc["H1", "verdict"] == "not run yet" and v.loc["H1", "p_holm"] == 1.0
    assert v.loc["H3", "units_missing"] == 0 and v.loc["H3", "verdict"] == "supported"


def test_a_partial_alpha_grid_still_writes_its_claims(tmp_path):
    res, norms = _results()
    part = (res.variant == "no-lc") & np.isclose(res.alpha.astype(float), 3.0)
    res[~part].to_csv(tmp_path / "results.csv", index=False)
    norms.to_csv(tmp_path / "norms.csv", index=False)
    t = pd.read_csv(C.write_claims(tmp_path, ALPHAS, EXPECTED)["verdicts"]).set_index("statement")
    assert t.loc["AUROC slope over ln(alpha), w/ L_LC - without", "n"] == 0
    assert t.loc["with L_LC, AUROC rises with alpha", "verdict"] == "supported"


def test_side_by_side_names_the_verdict_and_h5s_accuracy():
    v = C.primary_verdicts(*_results(mode_acc=-0.3), ALPHAS, EXPECTED)
    md = C.side_by_side_markdown({"digits": v, "fashion-mnist": v.iloc[:0]})
    h5 = [line for line in md.splitlines() if line.startswith("| H5-norm |")][0]
    acc = v.set_index("hypothesis").loc["H5-norm", "accuracy_effect"]
    assert acc == pytest.approx(-0.3, abs=0.05) and f"acc. {acc:+.2f} [" in h5 and "] pt," in h5
    assert "**supported**" in h5 and h5.endswith("|  |")          # the other preset: empty


def test_pooling_needs_both_methods_of_a_unit():
    res, _ = _results(units=2, models=2)
    lc, no = {"variant": "lc-fixed", "alpha": 1.0}, {"variant": "no-lc", "alpha": 1.0}
    r = res[res.score == "msp"]
    d = C.contrast(r, "auroc", lc, no)
    assert len(d) == 2
    d1 = C.contrast(r[~((r.seed == 1) & (r.method == "mixoe"))], "auroc", lc, no)
    assert d1.index.tolist() == [(0, 0)]


def test_claim_table_and_files(tmp_path):
    res, norms = _results()
    res.to_csv(tmp_path / "results.csv", index=False)
    norms.to_csv(tmp_path / "norms.csv", index=False)
    paths = C.write_claims(tmp_path, ALPHAS, EXPECTED, "digits")
    t = pd.read_csv(paths["verdicts"])
    need = {"claim", "statement", "primary", "endpoint", "n", "effect", "ci_low", "ci_high", "p",
            "p_holm", "verdict"}
    assert need <= set(t.columns)
    assert t["primary"].sum() == 7 and set(t.loc[~t["primary"], "verdict"]) == {"secondary"}
    assert t.loc[~t["primary"], "p_holm"].isna().all()
    sec = t[~t["primary"]]
    assert {"energy"} <= set(sec["score"]) and "oe - CE fine-tune" in set(sec["statement"])
    # H3's control: the slope without L_LC (0 here) and the difference of the slopes (+0.01)
    slopes = sec.set_index("statement")["effect"]
    assert slopes["AUROC slope over ln(alpha), without L_LC (MixOE's own)"] == pytest.approx(0, abs=0.002)
    assert slopes["AUROC slope over ln(alpha), w/ L_LC - without"] == pytest.approx(0.01, abs=0.002)
    md = (tmp_path / "claims.md").read_text()
    assert md.count("| H") == 8 and "| H1 | L_LC raises AUROC |" in md and "supported" in md


def test_t_power_against_a_simulation():
    rng = np.random.default_rng(1)
    sims = rng.normal(0.6, 1.0, size=(20000, 8))
    p = stats.ttest_1samp(sims, 0.0, axis=1).pvalue
    assert W.t_power(0.6, 1.0, 8, 0.05) == pytest.approx((p < 0.05).mean(), abs=0.01)


def test_power_analysis_sizes_from_the_pilot_spread():
    res, norms = _results(units=4, models=4, noise=0.004)
    df = W.power_analysis(res, norms, ALPHAS, "fashion-mnist", units_per_model=2)
    h1 = df[df.hypothesis == "H1"].iloc[0]
    assert h1.pilot_units == 4 and not h1.components_split      # one unit per model
    assert h1.n_design == max(10, h1.units_needed)
    noisy = W.power_analysis(*_results(units=4, models=4, noise=0.02), ALPHAS, "fashion-mnist")
    assert noisy[noisy.hypothesis == "H1"].iloc[0].units_needed > h1.units_needed
    assert (df.n_design >= df.minimum).all()
    assert "| H1 |" in W.power_markdown(df)
