"""The claims study (study.py): its grid, priority order, resumability and outputs."""
import pandas as pd
import pytest

from lmoe_viz.cli import main
from lmoe_viz.experiments import cell_name
from lmoe_viz.study import SCORES, Study, bn_table_cells


def test_cell_names_carry_lc_mode_and_regime():
    assert cell_name("mixoe", True, 1.0, 0) == "mixoe_lc_a1_s0"          # runs made before --bn
    assert cell_name("logit_mixoe", True, 0.3, 2, "stop-id", "id-stats") == \
        "logit_mixoe_lc-stop-id_a0.3_s2_bn-id-stats"
    assert cell_name("oe", False, 1.0, 1, bn="separate") == "oe_s1_bn-separate"


def test_study_grid_is_complete_unique_and_in_priority_order():
    s = Study()
    cells = s.cells()
    names = [s.run_dir(c).name for c in cells]
    assert len(names) == len(set(names)) == 2 * 5 * 3 * 3 + 3 + 2 * 3   # grid + OE + separate MixOE
    assert {c.bn for c in cells} == {"id-stats", "separate"}
    assert {c.method for c in cells if c.bn == "separate"} == {"mixoe"}
    # alpha 1 without / with L_LC for every seed first: claims 1, 2, 4 before anything else
    first = cells[:12]
    assert {(c.alpha, c.lc_mode) for c in first} == {(1.0, "fixed")} and {c.seed for c in first} == {0, 1, 2}
    assert names.index("logit_mixoe_lc-norm_a1_s2_bn-id-stats") < names.index("mixoe_a0.3_s0_bn-id-stats")
    assert names.index("oe_s0_bn-id-stats") < names.index("mixoe_lc-norm_a3_s2_bn-id-stats")


def test_bn_table_covers_every_model_under_every_regime():
    cells = bn_table_cells(Study())
    assert {(c.method, c.lc, c.bn) for c in cells} == {
        (m, lc, bn) for m, lc in (("oe", False), ("mixoe", False), ("mixoe", True),
                                  ("logit_mixoe", False), ("logit_mixoe", True))
        for bn in ("separate", "joint", "id-stats")}


@pytest.mark.slow
def test_study_cli_trains_evaluates_and_resumes(tmp_path, capsys):
    args = ["study", "--preset", "digits", "--out", str(tmp_path), "--alphas", "1", "--seeds", "0", "1",
            "--lc-modes", "fixed", "norm", "--pretrain-epochs", "1", "--finetune-epochs", "1",
            "--limit-batches", "2", "--max-runs", "6"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "0 of 18 runs finished, 18 to train; training 6 now" in out and "'trained': 6" in out
    res = pd.read_csv(tmp_path / "results" / "results.csv")
    # pretrained + 6 runs, each under 2 protocols x 4 scores
    assert res["run"].nunique() == 7 and len(res) == 7 * 2 * len(SCORES)
    assert set(res["protocol"]) == {"holdout", "paper"} and set(res["bn"]) >= {"id-stats"}
    norms = pd.read_csv(tmp_path / "results" / "norms.csv")
    assert {"id_norm_mean", "ood_norm_mean", "far_norm_mean"} <= set(norms.columns)
    verdicts = pd.read_csv(tmp_path / "results" / "claims_verdicts.csv")
    assert set(verdicts["claim"].astype(str)) >= {"1a", "1b", "2", "4"}
    assert (tmp_path / "results" / "claims.md").read_text().count("| 1a |") == 1
    # resumable: a second call finds the 6 runs finished and trains the next 1 only
    assert main(args[:-1] + ["1"]) == 0
    assert "6 of 18 runs finished, 12 to train; training 1 now" in capsys.readouterr().out


def test_study_refuses_a_grid_without_the_fixed_lc(tmp_path, capsys):
    assert main(["study", "--out", str(tmp_path), "--lc-modes", "norm"]) == 2
    assert "--lc-modes must include fixed" in capsys.readouterr().err
