"""A method is one registry entry (methods.METHODS), a score one (scores.SCORES): a toy
method and a toy score added through the registries alone train, evaluate, fill tables
and plot, with nothing else edited."""
import json

import numpy as np
import pytest

from lmoe_viz import methods, plots, scores
from lmoe_viz.cli import main
from lmoe_viz.grid import Grid
from lmoe_viz.tables import summary_table


def half_mixoe(model, cfg, num_classes, x_in, y, x_out=None, lam=1.0, box=None):
    """MixOE's objective at half weight: a method the package has never seen."""
    loss, terms = methods.mixoe(model, cfg, num_classes, x_in, y, x_out, lam, box)
    return 0.5 * loss, terms


def neg_top2_gap(logits):
    z = np.sort(np.asarray(logits, dtype=np.float64), axis=1)
    return z[:, -1] - z[:, -2]


@pytest.fixture
def toys(monkeypatch):
    monkeypatch.setitem(methods.METHODS, "half_mixoe", methods.Method(
        "half_mixoe", "Half MixOE", half_mixoe, outliers=True, mixes=True,
        reference_bn="separate", order=2.5, mix_layers=("input",), colors=(5, 6)))
    monkeypatch.setitem(scores.SCORES, "top2gap", scores.Score(
        "top2gap", neg_top2_gap, "top-2 gap", "a toy"))


def test_a_toy_method_and_score_need_only_their_registry_entries(toys, tmp_path, capsys):
    grid = Grid(preset="digits", runs_dir=str(tmp_path), methods=("mixoe", "half_mixoe"),
                lcs=(False, True), include_oe=False, pretrain_epochs=1, finetune_epochs=1,
                limit_batches=2, device="cpu")
    table = grid.run(progress=False)
    assert {"Half MixOE", "Half MixOE w/ L_LC"} <= set(table["model"])
    assert (tmp_path / "half_mixoe_lc_a1_s0" / "metrics.json").is_file()
    summary = summary_table(table)                 # the registry's order: after MixOE
    assert list(summary["model"]) == ["Pretrained", "MixOE", "MixOE w/ L_LC", "Half MixOE",
                                      "Half MixOE w/ L_LC"]
    assert summary.loc[summary.model == "Half MixOE", "alpha"].item() == 1.0   # it mixes
    # the CLI trains it too, and evaluates it with the toy score
    out = tmp_path / "cli"
    assert main(["finetune", "--preset", "digits", "--init", str(tmp_path / "pretrained/checkpoint.pt"),
                 "--method", "half_mixoe", "--lc", "--epochs", "1", "--limit-batches", "2",
                 "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--score", "top2gap"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["score"] == "top2gap" and 0 <= m["auroc"] <= 1
    # its colours come from its entry
    assert plots.model_color("Half MixOE w/ L_LC") == plots.PALETTE[6]
    ax = plots.norm_histogram(np.ones(5), np.zeros(5), label="Half MixOE")
    assert ax.patches[0].get_facecolor()[:3] == pytest.approx(plots.PALETTE[5])


def test_an_unknown_method_or_score_is_one_line_naming_the_choices():
    from lmoe_viz.errors import UserError
    with pytest.raises(UserError, match="unknown method 'vos'; choose one of baseline, ce"):
        methods.method_spec("vos")
    with pytest.raises(UserError, match="unknown score 'odin'; choose one of msp"):
        scores.score("odin", np.zeros((2, 3)))
