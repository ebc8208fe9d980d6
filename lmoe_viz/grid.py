"""Grids of runs: pretrain once, fine-tune per cell (tables.py gathers their results).

A cell is (method, lc, alpha, seed); its run folder is ``<runs_dir>/<cell name>`` and
holds ``checkpoint.pt`` and ``metrics.json``. Finished cells are skipped (train.py does
not retrain a finished run), so a grid can be rerun or extended cheaply. ``sweep.py``
runs a grid as cluster jobs, ``study.py`` builds the claims study from grids.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .config import RunConfig
from .detectors import detector_spec
from .errors import UserError
from .evaluation import checkpoint_scores
from .extract import extract
from .logitsfile import file_scores, load_logits_file
from .methods import MIXING, PRETRAINING, method_spec, model_label
from .models import load_checkpoint
from .scores import SCORES
from .tables import results_table
from .train import train

PRETRAINED = "pretrained"
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


def figure_logits(runs: dict, device: str = "cpu", files: dict | None = None) -> dict:
    """{label: (ID test logits, OOD test logits)} of ``Grid.figure_runs`` (Figs. 3-4), from
    each run's logit cache (extract.py), then of each ``files`` entry {label: .npz}: any
    model's exported logits (logitsfile.py), shown with the same figures."""
    out = {}
    for label, run in runs.items():
        r = extract(Path(run) / "checkpoint.pt", device=device)
        out[label] = (r["id_test"]["logits"], r["ood_test"]["logits"])
    for label, path in (files or {}).items():
        if label in out:
            raise UserError(f"logits_files label {label!r} is a model of the grid; name it otherwise")
        f = load_logits_file(path)
        out[label] = (f["id"]["logits"], f["ood"]["logits"])
    return out


def figure_scores(runs: dict, names, device: str = "cpu", files: dict | None = None,
                  data_root=None) -> dict:
    """{label: {detector: (ID test scores, OOD test scores)}} of the post-hoc detectors among
    ``names`` (logit scores are left to the explorer, which computes them from the logits)
    for the models of ``figure_logits``, on the holdout protocol, for the explorers
    (widgets.model_score_picker). Checkpoints give every detector
    (evaluation.checkpoint_scores, cached beside the logits); a logits file gives those its
    arrays feed, and for the others the one-line reason instead of the arrays."""
    for name in names:
        if name not in SCORES:
            detector_spec(name)            # an unknown name: one line, before any work
    names = [n for n in names if n not in SCORES]
    out = {}
    for label, run in runs.items():
        ckpt = Path(run) / "checkpoint.pt"
        loaded = load_checkpoint(ckpt) if names else None       # read once for every detector
        out[label] = {n: checkpoint_scores(ckpt, score=n, data_root=data_root, device=device,
                                           loaded=loaded) for n in names}
    for label, path in (files or {}).items():
        data, out[label] = load_logits_file(path), {}
        for n in names:
            try:
                out[label][n] = file_scores(data, n, str(path))
            except UserError as exc:
                out[label][n] = str(exc)
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
        self.i, self.name, self.t0, self.done_epochs = i, name, time.time(), 0

    def epoch(self, record: dict, epochs: int) -> None:
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
