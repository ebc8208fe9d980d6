"""Results tables of finished runs: one row per run under a named protocol, score and
metric convention; mean and std over seeds (Table I's layout); beside the paper's numbers;
formatted as Markdown and LaTeX."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import UserError
from .evaluation import evaluate_checkpoint
from .io import atomic_write_text
from .methods import METHODS, model_label
from .train import finished, read_metrics

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
REFERENCE_TABLE = DATA_DIR / "paper_table1.csv"
#: the datasets of the paper's Table I (data/paper_table1.csv)
PAPER_DATASETS = ("bird", "aircraft", "butterfly")


def results_table(runs_dir, protocol: str = "holdout", convention: str = "ours",
                  score: str = "msp", data_root=None, device="cpu",
                  recalibrate_bn: bool = False, runs=None) -> pd.DataFrame:
    """One row per finished run under ``runs_dir`` (only the folders named in ``runs``
    when given: a grid's own cells, ``Grid.table``), under a named protocol, score and
    metric convention (evaluation.py). ``holdout``/``ours``/``msp`` is what training
    records in metrics.json; any other combination, or ``recalibrate_bn`` (BatchNorm
    statistics recomputed on ID training data, a diagnostic), is computed from cached
    logits. Rows carry the run's BatchNorm regime (``bn``) and L_LC mode."""
    rows = []
    paths = sorted(Path(runs_dir).glob("*/metrics.json"))
    if runs is not None:
        wanted = set(runs)
        paths = [p for p in paths if p.parent.name in wanted]
    for path in paths:
        if not finished(path.parent):
            continue
        m = read_metrics(path.parent)
        if (protocol, convention, score, recalibrate_bn) != ("holdout", "ours", "msp", False):
            m = {**m, **evaluate_checkpoint(path.parent / "checkpoint.pt", protocol, score,
                                            convention, data_root=data_root, device=device,
                                            recalibrate_bn=recalibrate_bn)}
        c = m["config"]
        lc_mode = c.get("lc_mode", "fixed")
        rows.append({"run": path.parent.name, "method": c["method"], "lc": bool(c["lc"]),
                     "lc_mode": lc_mode if c["lc"] else "",
                     "bn": _bn_label(c), "recalibrate_bn": recalibrate_bn,
                     "alpha": c["alpha"] if METHODS[c["method"]].mixes else np.nan,
                     "seed": c["seed"], "model": model_label(c["method"], c["lc"], lc_mode),
                     "protocol": protocol, "score": score, "metric_convention": convention,
                     "weights": _weights_label(m.get("weights")),
                     "accuracy": m["accuracy"], "auroc": m["auroc"], "fpr95": m["fpr95"],
                     "aupr_in": m.get("aupr_in"), "aupr_out": m.get("aupr_out")})
    if not rows:
        raise UserError(f"no finished runs under {runs_dir}; run the grid first "
                        "(notebooks/01_train.ipynb or `lmoe-viz sweep`)")
    return pd.DataFrame(rows)


def _bn_label(config: dict) -> str:
    """The run's BatchNorm regime; ``ID only`` for pretraining (ID forwards only: every
    regime is the same). Not ``n/a``: pandas reads that back as a missing value."""
    return "ID only" if METHODS[config["method"]].pretrains else config.get("bn", config.get("batching"))


def _weights_label(rec) -> str:
    """``IMAGENET1K_V1``, ``none`` or ``file:<sha256 prefix>`` (metrics.json's record)."""
    if not rec:
        return "unknown"
    return f"file:{rec['sha256'][:12]}" if rec.get("name") == "file" else rec.get("name", "unknown")


def mean_std_over_seeds(df: pd.DataFrame, keys: list) -> pd.DataFrame:
    """Mean and std of accuracy, AUROC and FPR95 and the number of seeds per ``keys``
    (a missing alpha, for the baselines, is a group of its own)."""
    g = df.fillna({"alpha": -1}).groupby(keys, sort=False)
    out = g[["accuracy", "auroc", "fpr95"]].agg(["mean", "std"])
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    out["n_seeds"] = g.size()
    out = out.reset_index()
    out["alpha"] = out["alpha"].replace(-1, np.nan)
    return out


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (alpha, method, lc), baselines first (Table I layout);
    runs of another L_LC mode or BatchNorm regime are rows of their own."""
    keys = ["alpha", "method", "lc", "model"]
    keys += [k for k in ("lc_mode", "bn", "protocol", "score", "metric_convention") if k in df]
    out = mean_std_over_seeds(df, keys)
    out["_o"] = out["method"].map({n: m.order for n, m in METHODS.items()})
    out = out.sort_values(["_o"]).sort_values(["alpha", "_o", "lc"], na_position="first", kind="stable")
    return out.drop(columns="_o").reset_index(drop=True)


def detector_table(table, scores, metric: str = "auroc") -> pd.DataFrame:
    """Trained method x score or detector: ``metric`` (mean over seeds) per model (rows, in
    table order) and score (columns, in ``scores``' order). ``table(score=...)`` gives one
    results table per score (``Grid.table``, or ``results_table`` bound to a folder)."""
    long = pd.concat([table(score=s) for s in scores], ignore_index=True)
    order = {n: m.order for n, m in METHODS.items()}
    long["_o"] = long["method"].map(order)
    keys = ["alpha", "_o", "lc", "model"]
    wide = (long.groupby(keys + ["score"], dropna=False)[metric].mean()
            .unstack("score").reset_index().sort_values(["alpha", "_o", "lc"], na_position="first"))
    wide = wide.drop(columns=["_o", "lc"])[["alpha", "model", *scores]]
    return wide.reset_index(drop=True)


def formatted_detector_table(table: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """``detector_table`` for reading: alpha as text (empty for the baselines), values in %."""
    out = table.copy()
    out["alpha"] = out["alpha"].map(lambda a: "" if pd.isna(a) else f"{a:g}")
    for col in out.columns[2:]:
        out[col] = (100 * out[col]).map(f"{{:.{digits}f}}".format)
    return out


def best_rows(summary: pd.DataFrame) -> dict:
    """Index of the best row per column: highest accuracy and AUROC, lowest FPR95."""
    return {"accuracy": int(summary["accuracy_mean"].idxmax()),
            "auroc": int(summary["auroc_mean"].idxmax()),
            "fpr95": int(summary["fpr95_mean"].idxmin())}


def paper_table(dataset: str | None = None, path=REFERENCE_TABLE) -> pd.DataFrame:
    """The paper's Table I (accuracy %, AUROC and FPR95 as fractions)."""
    if not Path(path).is_file():
        raise UserError(f"reference table {path} not found; it ships in the repository's data/")
    df = pd.read_csv(path)
    df["lc"] = df["lc"].astype(str).str.lower() == "true"
    return df[df["dataset"] == dataset].reset_index(drop=True) if dataset else df


def with_paper(summary: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Add the paper's values for ``dataset`` beside ours (paper_* columns).

    Only numbers of the ``paper`` protocol (ID val vs WebVision, data/protocols.py) are
    comparable with Table I; any other protocol is refused."""
    protocols = set(summary["protocol"]) if "protocol" in summary else {"holdout"}
    if protocols != {"paper"}:
        raise UserError(f"the paper's Table I is compared only with numbers of the 'paper' "
                        f"protocol (ID val vs WebVision), not {sorted(protocols)}; compute "
                        "results_table(..., protocol='paper')")
    paper = paper_table(dataset).rename(columns={"accuracy": "paper_accuracy",
                                                 "auroc": "paper_auroc", "fpr95": "paper_fpr95"})
    return summary.merge(paper.drop(columns="dataset"), on=["alpha", "method", "lc"], how="left")


#: published numbers beside ours: file under data/, the protocol and metric convention
#: they were measured under (only our rows of both are shown beside them)
REFERENCES = {"ascood": ("ascood_finegrained.csv", "holdout", "openood")}


def reference_datasets(reference: str) -> list[str]:
    """The datasets a published table of REFERENCES has rows for."""
    return sorted(set(pd.read_csv(DATA_DIR / REFERENCES[reference][0])["dataset"]))


def reference_table(dataset: str, reference: str = "ascood") -> pd.DataFrame:
    """A published table's rows for ``dataset`` (data/README.md), AUROC and FPR95 as
    fractions (``*_std`` too); ``ours`` names our score, detector or method."""
    if reference not in REFERENCES:
        raise UserError(f"unknown reference {reference!r}; choose one of {', '.join(REFERENCES)}")
    df = pd.read_csv(DATA_DIR / REFERENCES[reference][0], keep_default_na=False)
    df = df[df["dataset"] == dataset]
    if df.empty:
        raise UserError(f"reference {reference} has no rows for {dataset!r}; it has "
                        f"{', '.join(reference_datasets(reference))}")
    for col in ("fpr95", "fpr95_std", "auroc", "auroc_std"):
        df[col] = df[col].astype(float) / 100.0
    return df.reset_index(drop=True)


def with_reference(summary: pd.DataFrame, dataset: str, reference: str = "ascood") -> pd.DataFrame:
    """``summary`` (one score) beside the reference's row of the same score or method:
    ``ref_auroc`` / ``ref_fpr95`` for the OE row and each MSP-scored pretrained or
    MixOE row (whose counterpart is the reference's method of that name), refused unless
    every row is of the reference's protocol and metric convention."""
    _, protocol, convention = REFERENCES[reference]
    got = {(p, c) for p, c in zip(summary.get("protocol", ["holdout"] * len(summary)),
                                  summary.get("metric_convention", ["ours"] * len(summary)))}
    if got != {(protocol, convention)}:
        raise UserError(f"{reference}'s numbers are {protocol!r} protocol, {convention!r} "
                        f"convention; these rows are {sorted(got)}: compute results_table(..., "
                        f"protocol={protocol!r}, convention={convention!r})")
    ref = reference_table(dataset, reference).set_index("ours")
    out = summary.copy()
    keys = [_counterpart(m, lc, s) for m, lc, s in
            zip(out["method"], out["lc"], out.get("score", ["msp"] * len(out)))]
    out["ref_auroc"] = [ref["auroc"].get(k) if k in ref.index else np.nan for k in keys]
    out["ref_fpr95"] = [ref["fpr95"].get(k) if k in ref.index else np.nan for k in keys]
    return out


def _counterpart(method: str, lc: bool, score: str) -> str | None:
    """The reference row of one of our rows: the pretrained model under a score or
    detector is the reference's post-hoc row of that name (a CE-trained network); OE and
    MixOE (without L_LC) under MSP are the reference's OE and MixOE rows."""
    if METHODS[method].pretrains:
        return score
    if score == "msp" and not lc and method in ("oe", "mixoe"):
        return method
    return None


def formatted_table(summary: pd.DataFrame, bold=("**", "**")) -> pd.DataFrame:
    """'mean ± std' strings (accuracy %, AUROC and FPR95 in %), best per column in bold."""
    best = best_rows(summary)
    out = pd.DataFrame({"alpha": summary["alpha"].map(lambda a: "" if pd.isna(a) else f"{a:g}"),
                        "model": summary["model"]})
    if "bn" in summary:
        out["BatchNorm"] = summary["bn"]
    for col, scale in (("accuracy", 1.0), ("auroc", 100.0), ("fpr95", 100.0)):
        cells = []
        for i, (m, s) in enumerate(zip(summary[f"{col}_mean"], summary[f"{col}_std"])):
            text = f"{m * scale:.2f}" + ("" if pd.isna(s) else f" ± {s * scale:.2f}")
            cells.append(f"{bold[0]}{text}{bold[1]}" if best[col] == i else text)
        out[{"accuracy": "Acc. (%)", "auroc": "AUROC (%)", "fpr95": "FPR95 (%)"}[col]] = cells
    for col in ("paper_accuracy", "paper_auroc", "paper_fpr95", "ref_auroc", "ref_fpr95"):
        if col in summary:
            scale = 1.0 if col == "paper_accuracy" else 100.0
            out[col.replace("paper_", "paper ").replace("ref_", "ref. ")] = summary[col].map(
                lambda v: "" if pd.isna(v) else f"{v * scale:.2f}")
    return out


def to_markdown(df: pd.DataFrame) -> str:
    """``df`` as a Markdown pipe table: header, separator, one line per row (values as str)."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


#: LaTeX's special characters in text, and ``±``, replaced in one pass (latex_escape)
LATEX_ESCAPES = str.maketrans({"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$",
                               "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                               "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                               "±": r"$\pm$"})


def latex_escape(value) -> str:
    """``value`` as LaTeX text: each special character escaped once (LATEX_ESCAPES)."""
    return str(value).translate(LATEX_ESCAPES)


def to_latex(df: pd.DataFrame) -> str:
    """``df`` as a booktabs LaTeX tabular (two left-aligned columns, the rest right-aligned):
    every cell and header escaped (latex_escape), a ``**bold**`` cell set in bold."""
    lines = [r"\begin{tabular}{" + "l" * 2 + "r" * (len(df.columns) - 2) + "}", r"\toprule",
             " & ".join(latex_escape(c) for c in df.columns) + r" \\", r"\midrule"]
    for row in df.itertuples(index=False):
        cells = []
        for v in row:
            s = latex_escape(v)
            if s.startswith("**") and s.endswith("**"):
                s = r"\textbf{" + s[2:-2] + "}"
            cells.append(s)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def export_table(summary: pd.DataFrame, out_dir, name: str = "table1") -> dict:
    """Write the table as CSV (numbers), Markdown and LaTeX (formatted, under a caption
    line naming its protocol, score and metric convention); atomic writes."""
    out_dir = Path(out_dir)
    paths = {"csv": out_dir / f"{name}.csv", "md": out_dir / f"{name}.md",
             "tex": out_dir / f"{name}.tex"}
    atomic_write_text(paths["csv"], summary.to_csv(index=False))
    formatted = formatted_table(summary)
    caption = table_caption(summary)
    atomic_write_text(paths["md"], (caption + "\n\n" if caption else "") + to_markdown(formatted))
    atomic_write_text(paths["tex"], (f"% {caption}\n" if caption else "") + to_latex(formatted))
    return paths


def table_caption(summary: pd.DataFrame) -> str:
    """'Protocol `p`, score `s`, metric convention `c`; mean ± std over seeds.' from the
    table's own columns (each value named; several are listed), '' without them."""
    parts = []
    for col, name in (("protocol", "Protocol"), ("score", "score"),
                      ("metric_convention", "metric convention")):
        if col in summary and len(summary):
            values = ", ".join(f"`{v}`" for v in dict.fromkeys(summary[col].dropna()))
            parts.append(f"{name} {values}")
    return (", ".join(parts) + "; mean ± std over seeds.") if parts else ""
