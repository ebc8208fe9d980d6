"""Verdicts (claims.py) on synthetic study results whose effects are known."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lmoe_viz.claims import claim_tests, paired_effect, verdict, verdicts, write_claims


def _results(lc_auroc=0.05, noise=0.002, seeds=(0, 1, 2), modes=("stop-id",), alphas=(0.3, 1.0, 3.0)):
    rng = np.random.default_rng(0)
    rows = []
    for seed in seeds:
        for method in ("mixoe", "logit_mixoe"):
            for alpha in alphas:
                for variant in ["no-lc", "lc-fixed"] + [f"lc-{m}" for m in modes]:
                    auroc = 0.70 + (lc_auroc if variant != "no-lc" else 0.0) \
                        + (0.01 * alpha if variant == "lc-fixed" else 0.0) \
                        - (0.02 if method == "logit_mixoe" and variant == "no-lc" else 0.0)
                    acc = 93.0 - 0.5 * alpha + (0.4 if variant == "lc-stop-id" else 0.0)
                    for protocol in ("holdout", "paper"):
                        rows.append({"run": f"{method}_{variant}_{alpha}_{seed}", "method": method,
                                     "lc": variant != "no-lc",
                                     "lc_mode": "" if variant == "no-lc" else variant[3:],
                                     "variant": variant, "bn": "id-stats", "alpha": alpha,
                                     "seed": seed, "protocol": protocol, "score": "msp",
                                     "accuracy": acc + rng.normal(0, 0.05),
                                     "auroc": auroc + rng.normal(0, noise),
                                     "fpr95": 1 - auroc + rng.normal(0, noise)})
    # an artifact row under another regime must not enter the paired tests
    rows.append({**rows[0], "bn": "separate", "auroc": 0.1})
    return pd.DataFrame(rows)


def test_paired_effect_matches_scipy_paired_t_interval():
    a = pd.Series([0.71, 0.74, 0.69, 0.73], index=[0, 1, 2, 3])
    b = pd.Series([0.70, 0.70, 0.70, 0.70, 0.5], index=[0, 1, 2, 3, 4])   # seed 4 unpaired
    got = paired_effect(a, b, +1)
    ci = stats.ttest_rel(a.values, b.values[:4]).confidence_interval(0.95)
    assert got["n_seeds"] == 4
    assert got["ci_low"] == pytest.approx(ci.low) and got["ci_high"] == pytest.approx(ci.high)
    assert got["outcome"] == "0"               # the interval contains 0
    assert paired_effect(a + 0.1, b, +1)["outcome"] == "+"
    assert paired_effect(a + 0.1, b, -1)["outcome"] == "-"
    one = paired_effect(a.iloc[:1] + 1, b, +1)
    assert one["n_seeds"] == 1 and np.isnan(one["ci_low"]) and one["outcome"] == "0"


@pytest.mark.parametrize("outcomes,expected", [
    ("+++", "supported"), ("++0", "supported"), ("++-", "inconclusive"), ("+00", "inconclusive"),
    ("---", "refuted"), ("--0", "refuted"), ("000", "inconclusive"), ("", "inconclusive")])
def test_verdict_rule(outcomes, expected):
    assert verdict(list(outcomes)) == expected


def test_known_effects_give_the_expected_verdicts():
    v = verdicts(claim_tests(_results()))
    get = lambda claim, mode="": v[(v.claim == claim) & (v["mode"] == mode)  # noqa: E731
                                   & (v.protocol == "holdout")].iloc[0]
    assert get("1a").verdict == "supported" and get("1a").tests == 6 and get("1a").seeds == "3"
    assert get("1b").verdict == "supported"
    assert get("3a").verdict == "supported" and get("3b").verdict == "supported"
    assert get("4").verdict == "supported"
    assert get("5a", "stop-id").verdict == "supported"
    assert get("5b", "stop-id").verdict == "supported"


def test_no_effect_is_inconclusive_and_one_seed_is_never_decided():
    v = verdicts(claim_tests(_results(lc_auroc=0.0, noise=0.02)))
    assert v[v.claim == "1a"].verdict.tolist() == ["inconclusive"] * 2
    one = verdicts(claim_tests(_results(seeds=(0,))))
    assert set(one.verdict) == {"inconclusive"} and set(one.seeds) == {"1"}


def test_write_claims_files(tmp_path):
    _results().to_csv(tmp_path / "results.csv", index=False)
    paths = write_claims(tmp_path)
    md = (tmp_path / "claims.md").read_text()
    assert "BatchNorm regime `id-stats`" in md and "| 1a | L_LC raises AUROC | supported" in md
    assert set(pd.read_csv(paths["verdicts"]).protocol) == {"holdout", "paper"}


def test_runs_not_there_yet_are_left_out_and_counted_missing():
    res = _results()
    res = res[~((res.method == "logit_mixoe") & (res.alpha == 3.0))]
    v = verdicts(claim_tests(res))
    row = v[(v.claim == "1a") & (v.protocol == "holdout")].iloc[0]
    assert row.tests == 5 and row.missing == 1 and row.verdict == "supported"
    empty = claim_tests(res[res.method == "oe"])
    assert empty.empty and verdicts(empty).empty
