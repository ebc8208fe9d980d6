"""Grids of runs (grid.py): their cells and run names, the table of exactly their cells,
the figures' models and the progress lines."""
import json

import pytest

from lmoe_viz import grid as G
from lmoe_viz import tables as T
from lmoe_viz.errors import UserError


def _fake_run(runs, name, method, lc=False, alpha=1.0, seed=0):
    d = runs / name
    d.mkdir(parents=True)
    cfg = {"method": method, "lc": lc, "alpha": alpha, "seed": seed, "bn": "id-stats"}
    (d / "metrics.json").write_text(json.dumps({"finished": True, "config": cfg, "accuracy": 90.0,
                                                "auroc": 0.9, "fpr95": 0.5}))


def test_grid_cells_and_names():
    g = G.Grid(alphas=(0.3, 1.0), seeds=(0, 1))
    cells = g.cells()
    assert len(cells) == 2 * (1 + 2 * 2 * 2)
    assert {g.run_dir(c).name for c in cells} >= {"oe_s1", "logit_mixoe_lc_a0.3_s0", "mixoe_a1_s1"}
    with pytest.raises(UserError, match="no finished runs"):
        T.results_table("/nonexistent")


def test_grid_table_holds_exactly_the_requested_cells(tmp_path):
    """Runs of another grid in the same folder (alpha 1 here) stay out of this grid's table."""
    g = G.Grid(runs_dir=str(tmp_path), methods=("mixoe",), lcs=(False,), alphas=(3.0,), seeds=(1,),
               bn="id-stats")
    for name in g.run_names():
        method = "baseline" if name == G.PRETRAINED else name.split("_")[0]
        _fake_run(tmp_path, name, method, alpha=3.0, seed=1)
    _fake_run(tmp_path, "logit_mixoe_lc_a1_s0_bn-id-stats", "logit_mixoe", True, 1.0, 0)
    _fake_run(tmp_path, "mixoe_a1_s0_bn-id-stats", "mixoe", False, 1.0, 0)
    assert g.run_names() == ["pretrained", "oe_s1_bn-id-stats", "mixoe_a3_s1_bn-id-stats"]
    assert sorted(g.table().run) == sorted(g.run_names())
    assert len(T.results_table(tmp_path)) == 5           # the folder holds more


def test_figures_show_only_the_grids_models_and_say_what_is_left_out():
    g = G.Grid(methods=("mixoe",), lcs=(False,), alphas=(3.0, 10.0), seeds=(1, 2))
    models, notes = g.figure_models()
    assert models == [("baseline", False), ("mixoe", False)]
    assert len(notes) == 3 and "Logit MixOE w/ L_LC is not in the grid" in notes[-1]
    alpha, seed, notes = g.focus(1.0, 0)
    assert (alpha, seed) == (3.0, 1) and len(notes) == 2
    assert "alpha_focus 1 is not among the grid's alphas [3.0, 10.0]: the figures show alpha 3" in notes[0]
    assert g.focus(10.0, 2) == (10.0, 2, [])


def test_grid_progress_lines_name_the_run_and_an_eta(capsys):
    p = G.GridProgress([3, 2, 2])
    p.start(1, "pretrained")                      # cached: no epoch reported, costs nothing
    p.start(2, "oe_s0")
    p.t0 -= 10.0                                  # its first epoch took 10 s
    p.epoch({"epoch": 1}, 2)
    out = capsys.readouterr().out
    # 1 epoch left of this run + 2 of the last, at 10 s an epoch
    assert out == "[grid 2/3] oe_s0 epoch 1/2 | ETA 30 s\n"
