"""Results tables (tables.py): mean and std over seeds, the paper's numbers beside ours,
exports, and the registry's order and labels."""
import numpy as np
import pandas as pd
import pytest

from lmoe_viz import tables as T
from lmoe_viz.errors import UserError
from lmoe_viz.methods import model_label


def _results():
    rows = [("baseline", False, np.nan, 0, 90.0, 0.90, 0.50), ("oe", False, np.nan, 0, 89.0, 0.91, 0.45),
            ("oe", False, np.nan, 1, 88.0, 0.93, 0.35)]
    for seed in (0, 1):
        rows += [("mixoe", False, 1.0, seed, 88.0 + seed, 0.92, 0.40),
                 ("logit_mixoe", True, 1.0, seed, 87.0, 0.95 + 0.01 * seed, 0.20 + 0.1 * seed)]
    df = pd.DataFrame(rows, columns=["method", "lc", "alpha", "seed", "accuracy", "auroc", "fpr95"])
    df["model"] = [model_label(m, l) for m, l in zip(df.method, df.lc)]
    return df


def test_summary_mean_std_and_best():
    s = T.summary_table(_results())
    assert list(s.model) == ["Pretrained", "OE", "MixOE", "Logit MixOE w/ L_LC"]
    oe = s[s.model == "OE"].iloc[0]
    assert oe.accuracy_mean == 88.5 and oe.n_seeds == 2
    assert oe.fpr95_std == pytest.approx(np.std([0.45, 0.35], ddof=1))
    best = T.best_rows(s)
    assert best == {"accuracy": 0, "auroc": 3, "fpr95": 3}
    f = T.formatted_table(s)
    assert f.loc[3, "AUROC (%)"] == "**95.50 ± 0.71**" and f.loc[0, "Acc. (%)"] == "**90.00**"


def test_paper_table_and_side_by_side():
    p = T.paper_table("aircraft")
    assert len(p) == 24
    row = p[(p.alpha == 1.0) & (p.method == "logit_mixoe") & p.lc].iloc[0]
    assert row.accuracy == 89.24 and row.auroc == 0.9998 and row.fpr95 == 0.0
    with pytest.raises(UserError, match="compared only with numbers of the 'paper' protocol"):
        T.with_paper(T.summary_table(_results()), "aircraft")      # hold-out numbers: refused
    paper_rows = _results().assign(protocol="paper", score="msp", metric_convention="ours")
    merged = T.with_paper(T.summary_table(paper_rows), "aircraft")
    assert merged.loc[3, "paper_auroc"] == 0.9998 and np.isnan(merged.loc[0, "paper_auroc"])
    assert "paper auroc" in T.formatted_table(merged)


def test_exports(tmp_path):
    paths = T.export_table(T.summary_table(_results()), tmp_path)
    assert pd.read_csv(paths["csv"]).shape[0] == 4
    md = paths["md"].read_text()
    assert md.startswith("| alpha | model |") and md.count("\n") == 6
    assert r"\textbf{" in paths["tex"].read_text()


def test_energy_oe_rows_are_labelled_and_ordered():
    df = pd.concat([_results(), pd.DataFrame([{"method": "energy_oe", "lc": False, "alpha": np.nan,
                                               "seed": 0, "accuracy": 87.0, "auroc": 0.9,
                                               "fpr95": 0.4, "model": model_label("energy_oe")}])])
    s = T.summary_table(df)
    assert list(s.model)[:3] == ["Pretrained", "OE", "Energy-OE"]


def test_ascood_numbers_sit_only_beside_rows_of_their_protocol_and_convention():
    import pandas as pd

    from lmoe_viz.errors import UserError
    from lmoe_viz.tables import reference_table, with_reference
    ref = reference_table("aircraft")
    row = ref[ref["method"] == "ASCOOD"].iloc[0]                 # read from ASCOOD's table
    assert (row["fpr95"], row["auroc"]) == (pytest.approx(0.4794), pytest.approx(0.8975))
    assert set(reference_table("car")["ours"]) >= {"msp", "energy", "mahalanobis", "vim", "oe", "mixoe"}
    rows = pd.DataFrame({"method": ["baseline", "baseline", "mixoe", "mixoe"],
                         "lc": [False, False, False, True], "score": ["msp", "vim", "msp", "msp"],
                         "protocol": "holdout", "metric_convention": "openood"})
    out = with_reference(rows, "car")
    assert out["ref_auroc"].tolist()[:3] == pytest.approx([0.8712, 0.8203, 0.9019])
    assert pd.isna(out["ref_auroc"].iloc[3])                     # MixOE w/ L_LC: no counterpart
    for protocol, convention in (("holdout", "ours"), ("paper", "openood")):
        with pytest.raises(UserError, match="'holdout' protocol, 'openood' convention"):
            with_reference(rows.assign(protocol=protocol, metric_convention=convention), "car")
    with pytest.raises(UserError, match="no rows for 'bird'"):
        reference_table("bird")


def test_latex_escapes_every_special_character_once():
    df = pd.DataFrame({"model": ["A & B_1", "**95.50 ± 0.71**"], "run": ["50% {x} #2", "~^$\\"],
                       "AUROC (%)": ["1", "2"]})
    tex = T.to_latex(df).splitlines()
    assert tex[2] == r"model & run & AUROC (\%) \\"
    assert tex[4] == r"A \& B\_1 & 50\% \{x\} \#2 & 1 \\"
    assert tex[5] == (r"\textbf{95.50 $\pm$ 0.71} & \textasciitilde{}\textasciicircum{}\$"
                      r"\textbackslash{} & 2 \\")
