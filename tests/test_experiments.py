import numpy as np
import pandas as pd
import pytest

from lmoe_viz import experiments as E
from lmoe_viz.errors import UserError


def _results():
    rows = [("baseline", False, np.nan, 0, 90.0, 0.90, 0.50), ("oe", False, np.nan, 0, 89.0, 0.91, 0.45),
            ("oe", False, np.nan, 1, 88.0, 0.93, 0.35)]
    for seed in (0, 1):
        rows += [("mixoe", False, 1.0, seed, 88.0 + seed, 0.92, 0.40),
                 ("logit_mixoe", True, 1.0, seed, 87.0, 0.95 + 0.01 * seed, 0.20 + 0.1 * seed)]
    df = pd.DataFrame(rows, columns=["method", "lc", "alpha", "seed", "accuracy", "auroc", "fpr95"])
    df["model"] = [E.model_label(m, l) for m, l in zip(df.method, df.lc)]
    return df


def test_summary_mean_std_and_best():
    s = E.summary_table(_results())
    assert list(s.model) == ["Pretrained", "OE", "MixOE", "Logit MixOE w/ L_LC"]
    oe = s[s.model == "OE"].iloc[0]
    assert oe.accuracy_mean == 88.5 and oe.n_seeds == 2
    assert oe.fpr95_std == pytest.approx(np.std([0.45, 0.35], ddof=1))
    best = E.best_rows(s)
    assert best == {"accuracy": 0, "auroc": 3, "fpr95": 3}
    f = E.formatted_table(s)
    assert f.loc[3, "AUROC (%)"] == "**95.50 ± 0.71**" and f.loc[0, "Acc. (%)"] == "**90.00**"


def test_paper_table_and_side_by_side():
    p = E.paper_table("aircraft")
    assert len(p) == 24
    row = p[(p.alpha == 1.0) & (p.method == "logit_mixoe") & p.lc].iloc[0]
    assert row.accuracy == 89.24 and row.auroc == 0.9998 and row.fpr95 == 0.0
    with pytest.raises(UserError, match="compared only with numbers of the 'paper' protocol"):
        E.with_paper(E.summary_table(_results()), "aircraft")      # hold-out numbers: refused
    paper_rows = _results().assign(protocol="paper", score="msp", metric_convention="ours")
    merged = E.with_paper(E.summary_table(paper_rows), "aircraft")
    assert merged.loc[3, "paper_auroc"] == 0.9998 and np.isnan(merged.loc[0, "paper_auroc"])
    assert "paper auroc" in E.formatted_table(merged)


def test_exports(tmp_path):
    paths = E.export_table(E.summary_table(_results()), tmp_path)
    assert pd.read_csv(paths["csv"]).shape[0] == 4
    md = paths["md"].read_text()
    assert md.startswith("| alpha | model |") and md.count("\n") == 6
    assert r"\textbf{" in paths["tex"].read_text()


def test_grid_cells_and_names():
    g = E.Grid(alphas=(0.3, 1.0), seeds=(0, 1))
    cells = g.cells()
    assert len(cells) == 2 * (1 + 2 * 2 * 2)
    assert {g.run_dir(c).name for c in cells} >= {"oe_s1", "logit_mixoe_lc_a0.3_s0", "mixoe_a1_s1"}
    with pytest.raises(UserError, match="no finished runs"):
        E.results_table("/nonexistent")


def test_energy_oe_rows_are_labelled_and_ordered():
    df = pd.concat([_results(), pd.DataFrame([{"method": "energy_oe", "lc": False, "alpha": np.nan,
                                               "seed": 0, "accuracy": 87.0, "auroc": 0.9,
                                               "fpr95": 0.4, "model": E.model_label("energy_oe")}])])
    s = E.summary_table(df)
    assert list(s.model)[:3] == ["Pretrained", "OE", "Energy-OE"]


def _fake_run(runs, name, method, lc=False, alpha=1.0, seed=0):
    import json
    d = runs / name
    d.mkdir(parents=True)
    cfg = {"method": method, "lc": lc, "alpha": alpha, "seed": seed, "bn": "id-stats"}
    (d / "metrics.json").write_text(json.dumps({"finished": True, "config": cfg, "accuracy": 90.0,
                                                "auroc": 0.9, "fpr95": 0.5}))


def test_grid_table_holds_exactly_the_requested_cells(tmp_path):
    """Runs of another grid in the same folder (alpha 1 here) stay out of this grid's table."""
    g = E.Grid(runs_dir=str(tmp_path), methods=("mixoe",), lcs=(False,), alphas=(3.0,), seeds=(1,),
               bn="id-stats")
    for name in g.run_names():
        method = "baseline" if name == E.PRETRAINED else name.split("_")[0]
        _fake_run(tmp_path, name, method, alpha=3.0, seed=1)
    _fake_run(tmp_path, "logit_mixoe_lc_a1_s0_bn-id-stats", "logit_mixoe", True, 1.0, 0)
    _fake_run(tmp_path, "mixoe_a1_s0_bn-id-stats", "mixoe", False, 1.0, 0)
    assert g.run_names() == ["pretrained", "oe_s1_bn-id-stats", "mixoe_a3_s1_bn-id-stats"]
    assert sorted(g.table().run) == sorted(g.run_names())
    assert len(E.results_table(tmp_path)) == 5           # the folder holds more


def test_figures_show_only_the_grids_models_and_say_what_is_left_out():
    g = E.Grid(methods=("mixoe",), lcs=(False,), alphas=(3.0, 10.0), seeds=(1, 2))
    models, notes = g.figure_models()
    assert models == [("baseline", False), ("mixoe", False)]
    assert len(notes) == 3 and "Logit MixOE w/ L_LC is not in the grid" in notes[-1]
    alpha, seed, notes = g.focus(1.0, 0)
    assert (alpha, seed) == (3.0, 1) and len(notes) == 2
    assert "alpha_focus 1 is not among the grid's alphas [3.0, 10.0]: the figures show alpha 3" in notes[0]
    assert g.focus(10.0, 2) == (10.0, 2, [])


def test_grid_progress_lines_name_the_run_and_an_eta(capsys):
    p = E.GridProgress([3, 2, 2])
    p.start(1, "pretrained")                      # cached: no epoch reported, costs nothing
    p.start(2, "oe_s0")
    p.t0 -= 10.0                                  # its first epoch took 10 s
    p.epoch({"epoch": 1}, 2)
    out = capsys.readouterr().out
    # 1 epoch left of this run + 2 of the last, at 10 s an epoch
    assert out == "[grid 2/3] oe_s0 epoch 1/2 | ETA 30 s\n"
