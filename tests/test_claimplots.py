"""The claims study's figures (claimplots.py), tested by what they draw."""
import matplotlib.pyplot as plt
import numpy as np
import pytest

from lmoe_viz import claimplots as CP
from lmoe_viz import claims as C
from lmoe_viz.study import NORM_BINS

from test_claims import ALPHAS, EXPECTED, _results


@pytest.fixture(scope="module")
def study():
    res, norms = _results()
    return res, norms, C.claim_table(res, norms, ALPHAS, EXPECTED)


def test_primary_effects_draws_each_hypothesis_in_margin_units(study):
    _, _, table = study
    ax = CP.primary_effects(table, ax=plt.figure().gca())
    prim = table[table["primary"]]
    dots = [ln for ln in ax.lines if ln.get_marker() == "o"]
    assert len(dots) == len(prim) == 7
    # top row is H1: its dot sits at effect / margin
    h1 = prim.iloc[0]
    top = max(dots, key=lambda ln: ln.get_ydata()[0])
    assert top.get_xdata()[0] == pytest.approx(h1["effect"] / h1["margin"])
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0].startswith("H1") and "n=10 units, 5 models, df=4" in labels[0]
    assert any(t.get_text().startswith("supported") for t in ax.texts)


def test_interim_estimates_are_hollow_and_say_what_is_missing(study):
    res, norms, _ = study
    cut = res[res.seed < 8]
    table = C.claim_table(cut, norms[norms.seed < 8], ALPHAS, EXPECTED)
    ax = CP.primary_effects(table, ax=plt.figure().gca())
    h1 = max((ln for ln in ax.lines if ln.get_marker() == "o"), key=lambda ln: ln.get_ydata()[0])
    assert h1.get_markerfacecolor() in ("white", (1.0, 1.0, 1.0, 1.0))
    assert any("not run yet (2 missing)" in t.get_text() for t in ax.texts)


def test_alpha_curve_is_on_the_real_alpha_axis_with_every_line_in_the_legend(study):
    res, _, _ = study
    ax = CP.alpha_curve(res, "auroc", ax=plt.figure().gca())
    assert ax.get_xscale() == "log"
    assert [float(t) for t in ax.get_xticks()] == pytest.approx(list(ALPHAS))
    handles, texts = ax.get_legend_handles_labels()
    assert len([t for t in texts if "L_LC" in t]) == 4 and all("(n=10)" in t for t in texts if "L_LC" in t)
    assert any(t.startswith("CE fine-tune") and "10 runs" in t for t in texts)
    assert len(handles) == 4 + 2          # every drawn line in the legend: 4 variants, CE and OE
    # the lines' points: mean over the units at each alpha (dodged around it)
    d = res[(res.score == "msp") & (res.method == "mixoe") & (res.variant == "lc-fixed")]
    means = [d[np.isclose(d.alpha, a)].auroc.mean() for a in ALPHAS]
    drawn = [c for c in ax.containers if "MixOE w/ L_LC" in c.get_label()
             and not c.get_label().startswith("Logit")][0]
    assert drawn.lines[0].get_ydata() == pytest.approx(means)


def test_norm_figure_states_its_runs_and_shares_one_legend(study):
    _, norms, _ = study
    n = norms.copy()
    hist = " ".join(["0"] * 50 + ["5"] + ["0"] * 50)
    for part in ("id", "ood", "far_photos_heldout"):
        n[f"{part}_norm_hist"] = hist
    fig = CP.norm_figure(n, NORM_BINS, alpha=1.0)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert "CE fine-tune (10 runs)" in titles
    assert any(t.startswith("MixOE\nw/ L_LC (eq. 15) (10 runs)") for t in titles)
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert len(legends) == 1                          # one legend: the same styles in every panel
    legend = legends[0]
    assert {t.get_text() for t in legend.get_texts()} == {
        "ID test", "near-OOD (held-out classes)", "far-OOD (held-out photos)"}


def test_control_effects_plots_each_method_minus_ce(study):
    _, _, table = study
    ax = CP.control_effects(table, ax=plt.figure().gca())
    names = [t.get_text() for t in ax.get_xticklabels()]
    assert names == ["OE", "MixOE without L_LC", "Logit MixOE without L_LC",
                     "MixOE w/ L_LC (eq. 15)", "Logit MixOE w/ L_LC (eq. 15)"]
    assert CP.control_label("CE fine-tune - pretrained") == "CE fine-tune - pretrained"
