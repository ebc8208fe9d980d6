"""Grids of runs: pretrain once, fine-tune per cell, gather one results table.

A cell is (method, lc, alpha, seed); its run folder is ``<runs_dir>/<cell name>`` and
holds ``checkpoint.pt`` and ``metrics.json``. Finished cells are skipped (train.py does
not retrain a finished run), so a grid can be rerun or extended cheaply.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from .config import RunConfig
from .methods import METHODS, MIXING, PRETRAINING, method_spec, model_label
from .errors import UserError
from .extract import extract
from .train import finished, read_metrics, train

PRETRAINED = "pretrained"
REFERENCE_TABLE = Path(__file__).resolve().parents[1] / "data" / "paper_table1.csv"
#: the datasets of the paper's Table I (data/paper_table1.csv)
PAPER_DATASETS = ("bird", "aircraft", "butterfly")
#: the five models of Figs. 3-4, in the paper's order: the pretrained model, then the
#: mixing methods without, then with L_LC
FIGURE_MODELS = ((PRETRAINING, False),) + tuple((m, lc) for lc in (False, True) for m in MIXING)


def cell_name(method: str, lc: bool, alpha: float, seed: int, lc_mode: str = "fixed",
              bn: str | None = None) -> str:
    """Run folder name of a grid cell; ``_lc-<mode>`` for an adaptive L_LC and ``_bn-<regime>``
    when the grid names a BatchNorm regime (none: each method's reference default)."""
    spec = method_spec(method)
    if spec.pretrains:
        return PRETRAINED
    tail = f"_s{seed}" + (f"_bn-{bn}" if bn else "")
    if not spec.mixes:
        return f"{method}{tail}"
    lc_part = ("_lc" if lc_mode == "fixed" else f"_lc-{lc_mode}") if lc else ""
    return f"{method}{lc_part}_a{alpha:g}{tail}"


@dataclasses.dataclass
class Grid:
    preset: str = "digits"
    runs_dir: str = "runs/digits"
    methods: tuple = MIXING
    lcs: tuple = (False, True)
    alphas: tuple = (1.0,)
    seeds: tuple = (0,)
    include_oe: bool = True
    pretrain_epochs: int | None = None
    finetune_epochs: int | None = None
    data_root: str | None = None
    device: str = "auto"
    split: int = 0
    limit_batches: int | None = None
    bn: str | None = None              # one BatchNorm regime for every cell (None: method defaults)
    lc_modes: tuple = ("fixed",)       # the L_LC variants of the cells with L_LC
    outliers: str = "crops"            # the embedded presets' outliers (data/outliers.py)
    pretrain_seed: int = 0             # seed of the one pretraining every cell starts from
    channels_last: bool = False        # channels_last on the CPU too (train.py; not in run names)

    @classmethod
    def from_params(cls, params: dict) -> "Grid":
        """The grid of a notebook's parameters (``Grid.from_params(globals())`` in 01-06):
        the names of NOTEBOOK_PARAMS that ``params`` holds, sequences as tuples; every
        other name is ignored."""
        given = {k: params[k] for k in NOTEBOOK_PARAMS if k in params}
        return cls(**{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in given.items()})

    def base(self, **kw) -> RunConfig:
        return RunConfig(preset=self.preset, data_root=self.data_root, device=self.device,
                         split=self.split, limit_batches=self.limit_batches,
                         outliers=self.outliers, channels_last=self.channels_last, **kw)

    def finetune_config(self, method: str, seed: int, lc: bool = False, alpha: float = 1.0,
                        lc_mode: str = "fixed") -> RunConfig:
        init = str(Path(self.runs_dir) / PRETRAINED / "checkpoint.pt")
        kw = {"lc": lc, "alpha": float(alpha), "lc_mode": lc_mode} if method_spec(method).mixes else {}
        return self.base(method=method, seed=seed, epochs=self.finetune_epochs, init=init,
                         bn=self.bn, **kw)

    def pretrain_config(self) -> RunConfig:
        return self.base(method=PRETRAINING, epochs=self.pretrain_epochs, seed=self.pretrain_seed)

    def cells(self) -> list[RunConfig]:
        out = []
        for seed in self.seeds:
            if self.include_oe:
                out.append(self.finetune_config("oe", seed))
            for alpha in self.alphas:
                for method in self.methods:
                    for lc in self.lcs:
                        for mode in (self.lc_modes if lc else ("fixed",)):
                            out.append(self.finetune_config(method, seed, lc, alpha, mode))
        return out

    def run_dir(self, cfg: RunConfig) -> Path:
        return Path(self.runs_dir) / cell_name(cfg.method, cfg.lc, cfg.alpha, cfg.seed,
                                               cfg.lc_mode, cfg.bn)

    def run_names(self) -> list[str]:
        """The run folders of this grid: the pretraining, then every cell."""
        return [PRETRAINED] + [self.run_dir(c).name for c in self.cells()]

    def run(self, progress: bool = True) -> pd.DataFrame:
        """Train what is missing (pretraining first), return the results table of exactly
        this grid's runs (other runs in ``runs_dir`` are left out). ``progress``: one plain
        line per epoch of each run trained (run i/N, its name, epoch, the grid's ETA), the
        same in a terminal, a log and a notebook (no widget left behind in saved outputs)."""
        jobs = [(self.pretrain_config(), Path(self.runs_dir) / PRETRAINED)]
        jobs += [(cfg, self.run_dir(cfg)) for cfg in self.cells()]
        report = GridProgress([cfg.resolved().epochs for cfg, _ in jobs], enabled=progress)
        for i, (cfg, out) in enumerate(jobs, 1):
            report.start(i, out.name)
            train(cfg, out, progress=False, on_epoch=report.epoch)
        return self.table()

    def table(self, **kw) -> pd.DataFrame:
        """``results_table`` of this grid's runs only (keywords: protocol, convention, ...)."""
        return results_table(self.runs_dir, runs=self.run_names(), **kw)

    def focus(self, alpha: float, seed: int) -> tuple[float, int, list[str]]:
        """The alpha and seed the figures show: the requested ones when the grid has them,
        else the grid's nearest alpha / first seed, with a note saying so."""
        notes = []
        if alpha not in self.alphas:
            near = min(self.alphas, key=lambda a: (abs(np.log(a / alpha)), a))
            notes.append(f"alpha_focus {alpha:g} is not among the grid's alphas "
                         f"{[float(a) for a in self.alphas]}: the figures show alpha {near:g}")
            alpha = near
        if seed not in self.seeds:
            notes.append(f"seed_focus {seed} is not among the grid's seeds {list(self.seeds)}: "
                         f"the figures show seed {self.seeds[0]}")
            seed = self.seeds[0]
        return float(alpha), int(seed), notes

    def figure_models(self) -> tuple[list, list[str]]:
        """The models of Figs. 3-4 that this grid trains, and a note for each left out."""
        keep, notes = [], []
        for method, lc in FIGURE_MODELS:
            if method == PRETRAINING or (method in self.methods and lc in self.lcs):
                keep.append((method, lc))
            else:
                notes.append(f"{model_label(method, lc)} is not in the grid (methods "
                             f"{list(self.methods)}, lcs {list(self.lcs)}): left out of the figures")
        return keep, notes

    def figure_runs(self, alpha: float, seed: int = 0, verbose: bool = True) -> dict:
        """{label: run folder} of the models of Figs. 3-4 that the grid holds, at the focus
        alpha and seed (``focus``), trained if missing. Nothing outside the grid is trained,
        so nothing enters Table I that was not asked for; what is left out is printed."""
        alpha, seed, notes = self.focus(alpha, seed)
        models, more = self.figure_models()
        if verbose:
            for note in notes + more:
                print("note:", note)
        train(self.pretrain_config(), Path(self.runs_dir) / PRETRAINED, progress=False)
        runs = {}
        for method, lc in models:
            if method == PRETRAINING:
                runs[model_label(method)] = Path(self.runs_dir) / PRETRAINED
                continue
            cfg = self.finetune_config(method, seed, lc, alpha)
            train(cfg, self.run_dir(cfg), progress=False)
            runs[model_label(method, lc)] = self.run_dir(cfg)
        return runs


#: the notebook parameters that make a grid (notebooks 01-06, Grid.from_params)
NOTEBOOK_PARAMS = ("preset", "runs_dir", "methods", "lcs", "alphas", "seeds", "pretrain_epochs",
                   "finetune_epochs", "data_root", "device", "split", "limit_batches", "bn")


def figure_logits(runs: dict, device: str = "cpu") -> dict:
    """{label: (ID test logits, OOD test logits)} of ``Grid.figure_runs`` (Figs. 3-4), from
    each run's logit cache (extract.py)."""
    out = {}
    for label, run in runs.items():
        r = extract(Path(run) / "checkpoint.pt", device=device)
        out[label] = (r["id_test"]["logits"], r["ood_test"]["logits"])
    return out


class GridProgress:
    """Plain progress lines of a grid: ``[grid 3/27] mixoe_a1_s0 epoch 2/5 | ETA 4 min``.

    The ETA is the time per epoch trained so far times the epochs still to train (this
    run's, then every later run's in full: a run found finished costs nothing and prints
    nothing, so the ETA can only come out high)."""

    def __init__(self, epochs: list, enabled: bool = True):
        self.epochs, self.enabled = list(epochs), enabled
        self.total = len(self.epochs)
        self.seconds, self.trained_epochs = 0.0, 0

    def start(self, i: int, name: str) -> None:
        import time
        self.i, self.name, self.t0, self.done_epochs = i, name, time.time(), 0

    def epoch(self, record: dict, epochs: int) -> None:
        import time
        now = time.time()
        self.seconds += now - self.t0
        self.t0 = now
        self.trained_epochs += 1
        if not self.enabled:
            return
        left = (epochs - record["epoch"]) + sum(self.epochs[self.i:])
        eta = self.seconds / self.trained_epochs * left
        print(f"[grid {self.i}/{self.total}] {self.name} epoch {record['epoch']}/{epochs} "
              f"| ETA {_duration(eta)}", flush=True)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


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
            from .evaluation import evaluate_checkpoint
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
    for col in ("paper_accuracy", "paper_auroc", "paper_fpr95"):
        if col in summary:
            scale = 1.0 if col == "paper_accuracy" else 100.0
            out[col.replace("paper_", "paper ")] = summary[col].map(
                lambda v: "" if pd.isna(v) else f"{v * scale:.2f}")
    return out


def to_markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def to_latex(df: pd.DataFrame) -> str:
    esc = lambda s: str(s).replace("%", r"\%").replace("_", r"\_").replace("±", r"$\pm$")  # noqa: E731
    lines = [r"\begin{tabular}{" + "l" * 2 + "r" * (len(df.columns) - 2) + "}", r"\toprule",
             " & ".join(esc(c) for c in df.columns) + r" \\", r"\midrule"]
    for row in df.itertuples(index=False):
        cells = []
        for v in row:
            s = esc(v)
            if s.startswith("**") and s.endswith("**"):
                s = r"\textbf{" + s[2:-2] + "}"
            cells.append(s)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def export_table(summary: pd.DataFrame, out_dir, name: str = "table1") -> dict:
    """Write the table as CSV (numbers), Markdown and LaTeX (formatted); atomic writes."""
    from .io import atomic_write_text
    out_dir = Path(out_dir)
    paths = {"csv": out_dir / f"{name}.csv", "md": out_dir / f"{name}.md",
             "tex": out_dir / f"{name}.tex"}
    atomic_write_text(paths["csv"], summary.to_csv(index=False))
    formatted = formatted_table(summary)
    atomic_write_text(paths["md"], to_markdown(formatted))
    atomic_write_text(paths["tex"], to_latex(formatted))
    return paths


def sample_responses(checkpoint, id_index: int, ood_index: int, lam: float,
                     data_root=None) -> dict:
    """Logits of one ID test sample, one OOD test sample, their input-space mix
    lam x_in + (1 - lam) x_out and their logit-space mix (eq. 13) (Figs. 5-6)."""
    import torch

    from .data import build_splits
    from .losses import logit_mix, mixup
    from .models import load_checkpoint, model_from_checkpoint
    ckpt = load_checkpoint(checkpoint)
    cfg = RunConfig.from_dict(ckpt["config"])
    if data_root:
        cfg.data_root = data_root
    splits = build_splits(cfg)
    for name, ds, i in (("id_index", splits.id_test, id_index), ("ood_index", splits.ood_test, ood_index)):
        if not 0 <= i < len(ds):
            raise UserError(f"{name} {i} is outside 0..{len(ds) - 1}; pick a test sample in range")
    if not 0 <= lam <= 1:
        raise UserError(f"lam must be in [0, 1], got {lam}")
    model = model_from_checkpoint(ckpt).eval()
    x_in, y, _ = splits.id_test[id_index]
    x_out = splits.ood_test[ood_index][0]
    with torch.no_grad():
        z = model(torch.stack([x_in, x_out, mixup(x_in, x_out, lam)]))
    return {"id": z[0].numpy(), "ood": z[1].numpy(), "input_mix": z[2].numpy(),
            "logit_mix": logit_mix(z[0], z[1], lam).numpy(), "label": int(y), "lam": lam,
            "x_id": x_in.numpy(), "x_ood": x_out.numpy()}
