"""``lmoe-viz study``: the paper's claims 1-5 tested with several seeds under one
BatchNorm regime (claims.py analyses what it produces).

The study is a set of ordinary grid cells (experiments.Grid) in one ``runs/`` folder, so
its runs are resumable, cached and named as every other run:

* the main grid: MixOE and Logit MixOE, without L_LC, with L_LC (eq. 15) and with each
  adaptive L_LC (``lc_modes``), alpha in ``alphas``, ``seeds``, all under ``bn``
  (``id-stats`` by default), plus OE under the same regime;
* the BatchNorm artifact row: MixOE without and with L_LC under ``separate`` (MixOE's
  default) at alpha 1, labelled by its regime;
* the pretrained model, shared by every cell (seed 0).

Runs go in a priority order, so that a study stopped early holds the most informative
complete subsets: alpha 1 first (the paper's default) with the fixed L_LC and without, for
every seed; then the adaptive variants of Logit MixOE at alpha 1; then the references (OE,
the ``separate`` MixOE rows); then alpha 0.3 and 3 without / with L_LC; then everything
else. ``jobs`` > 1 trains that many runs at a time in separate processes, one thread
each (on a 2-core machine, two one-thread runs do more work per minute than one two-thread
run).

``evaluate`` writes one row per (finished run, protocol, score) to ``results.csv``, and
the logit norms per run (claim 2) of the ID test images, the held-out classes (``ood``,
near-OOD) and the far-OOD images of the ``paper`` protocol (``far``) to ``norms.csv``:
mean, quantiles and a histogram on fixed bins.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .config import RunConfig
from .experiments import PRETRAINED, Grid, _bn_label, model_label
from .io import atomic_write_text
from .losses import LC_MODES

SCORES = ("msp", "maxlogit", "energy", "l2norm")
PROTOCOLS = ("holdout", "paper")
ARTIFACT_BN = "separate"


@dataclasses.dataclass
class Study:
    preset: str = "fashion-mnist"
    out: str = "out/study/fashion-mnist"
    alphas: tuple = (0.3, 1.0, 3.0)
    seeds: tuple = (0, 1, 2)
    bn: str = "id-stats"
    methods: tuple = ("mixoe", "logit_mixoe")
    lc_modes: tuple = LC_MODES
    pretrain_epochs: int | None = None
    finetune_epochs: int | None = None
    limit_batches: int | None = None
    data_root: str | None = None
    device: str = "auto"

    @property
    def runs_dir(self) -> Path:
        return Path(self.out) / "runs"

    def grid(self, bn: str | None = None) -> Grid:
        return Grid(preset=self.preset, runs_dir=str(self.runs_dir), methods=tuple(self.methods),
                    lcs=(False, True), alphas=tuple(self.alphas), seeds=tuple(self.seeds),
                    pretrain_epochs=self.pretrain_epochs, finetune_epochs=self.finetune_epochs,
                    data_root=self.data_root, device=self.device, limit_batches=self.limit_batches,
                    bn=bn or self.bn, lc_modes=tuple(self.lc_modes))

    def cells(self) -> list[RunConfig]:
        """Every fine-tuning run of the study, in priority order (module doc)."""
        g, art = self.grid(), self.grid(ARTIFACT_BN)
        first = 1.0 if 1.0 in self.alphas else self.alphas[0]
        others = [a for a in self.alphas if a != first]
        core = lambda a, s: [g.finetune_config(m, s, lc, a)   # noqa: E731
                             for m in self.methods for lc in (False, True)]
        adaptive = lambda a, s, ms: [g.finetune_config(m, s, True, a, mode)   # noqa: E731
                                     for m in ms for mode in self.lc_modes if mode != "fixed"]
        tiers = [[c for s in self.seeds for c in core(first, s)],
                 [c for s in self.seeds for c in adaptive(first, s, ("logit_mixoe",))],
                 [c for s in self.seeds for c in [g.finetune_config("oe", s)]
                  + [art.finetune_config("mixoe", s, lc, first) for lc in (False, True)]],
                 [c for s in self.seeds for a in others for c in core(a, s)],
                 [c for s in self.seeds for c in adaptive(first, s, ("mixoe",))],
                 [c for s in self.seeds for a in others for c in adaptive(a, s, self.methods)]]
        seen, out = set(), []
        for cfg in (c for tier in tiers for c in tier if c.method in self.methods + ("oe",)):
            name = self.run_dir(cfg).name
            if name not in seen:
                seen.add(name)
                out.append(cfg)
        return out

    def run_dir(self, cfg: RunConfig) -> Path:
        return self.grid().run_dir(cfg)

    def pending(self) -> list[RunConfig]:
        return [c for c in self.cells() if not _finished(self.run_dir(c))]

    def run(self, jobs: int = 1, log=print, max_runs: int | None = None) -> dict:
        """Train the pretrained model, then every unfinished cell (``jobs`` at a time;
        the first ``max_runs`` of them in priority order when given)."""
        from .train import train
        t0 = time.time()
        train(self.grid().pretrain_config(), self.runs_dir / PRETRAINED, progress=False)
        pending, total = self.pending(), len(self.cells())
        todo = pending[:max_runs]
        log(f"study {self.preset}: {total - len(pending)} of {total} runs finished, "
            f"{len(pending)} to train; training {len(todo)} now ({jobs} at a time)")
        done, failed = 0, []
        for name, seconds, error in _train_all([(c.to_dict(), str(self.run_dir(c))) for c in todo], jobs):
            done += 1
            if error:
                failed.append(name)
            log(f"[{done}/{len(todo)}] {name} {'FAILED (' + error + ')' if error else 'in'} "
                f"{seconds:.0f} s ({(time.time() - t0) / 60:.1f} min so far)")
        return {"trained": done - len(failed), "failed": failed, "seconds": round(time.time() - t0, 1)}

    def evaluate(self, results_dir, device: str = "cpu", recalibrate_bn: bool = False) -> dict:
        """``results.csv`` (run x protocol x score) and ``norms.csv`` for finished runs.
        One extraction per run (cached) of both protocols' parts, on data built once."""
        from .extract import extract
        results_dir = Path(results_dir)
        rows, norms = [], []
        splits = functools.lru_cache(maxsize=1)(self.splits)     # built on the first cache miss
        names = [PRETRAINED] + [self.run_dir(c).name for c in self.cells()]
        for name in names:
            run = self.runs_dir / name
            if not _finished(run):
                continue
            logits, meta = extract(run / "checkpoint.pt", parts=EVAL_PARTS, data_root=self.data_root,
                                   device=device, recalibrate_bn=recalibrate_bn, with_meta=True,
                                   splits=splits)
            rows += [_row(name, meta["config"], protocol, score, recalibrate_bn, logits)
                     for protocol in PROTOCOLS for score in SCORES]
            norms.append(_norm_row(name, meta["config"], logits))
        suffix = "_recalibrated" if recalibrate_bn else ""
        paths = {"results": results_dir / f"results{suffix}.csv",
                 "norms": results_dir / f"norms{suffix}.csv"}
        atomic_write_text(paths["results"], pd.DataFrame(rows).to_csv(index=False))
        atomic_write_text(paths["norms"], pd.DataFrame(norms).to_csv(index=False))
        return {k: str(v) for k, v in paths.items()}

    def splits(self):
        from .data import build_splits
        return build_splits(self.grid().pretrain_config().resolved())


#: the parts both protocols read (data/protocols.py)
EVAL_PARTS = ("id_test", "ood_test", "paper_id", "paper_ood")


#: the models of the BatchNorm table, each trained under every regime
BN_TABLE_MODELS = (("oe", False), ("mixoe", False), ("mixoe", True), ("logit_mixoe", False),
                   ("logit_mixoe", True))


def bn_table_cells(study: Study, alpha: float = 1.0, seed: int = 0) -> list[RunConfig]:
    """Each model of ``BN_TABLE_MODELS`` under each regime (alpha 1, seed 0 by default),
    in the study's runs folder (the study's own runs are reused)."""
    from .batchnorm import BN_REGIMES
    return [study.grid(bn).finetune_config(m, seed, lc, alpha)
            for bn in BN_REGIMES for m, lc in BN_TABLE_MODELS]


def bn_table(study: Study, results_dir, jobs: int = 1, alpha: float = 1.0, seed: int = 0,
             device: str = "cpu", log=print) -> dict:
    """Train what the BatchNorm table needs, then write ``bn_table.csv`` / ``.md``: each
    model x regime, accuracy / AUROC / FPR95 (holdout, MSP), as trained and with BatchNorm
    recalibrated on ID training data (the diagnostic of how much is BatchNorm)."""
    from .experiments import to_markdown
    from .extract import extract
    from .train import train
    train(study.grid().pretrain_config(), study.runs_dir / PRETRAINED, progress=False)
    cells = bn_table_cells(study, alpha, seed)
    todo = [c for c in cells if not _finished(study.run_dir(c))]
    for name, seconds, error in _train_all([(c.to_dict(), str(study.run_dir(c))) for c in todo], jobs):
        log(f"bn table: {name} {'FAILED (' + error + ')' if error else 'in'} {seconds:.0f} s")
    missing = [study.run_dir(c).name for c in cells if not _finished(study.run_dir(c))]
    if missing:
        from .errors import UserError
        raise UserError(f"the BatchNorm table misses {len(missing)} run(s) ({', '.join(missing)}); "
                        "see the log above and rerun --bn-table")
    rows = []
    splits = functools.lru_cache(maxsize=1)(study.splits)
    for cfg in cells:
        run = study.run_dir(cfg)
        row = {"model": model_label(cfg.method, cfg.lc), "bn": cfg.bn, "alpha": alpha, "seed": seed}
        for recal in (False, True):
            logits, meta = extract(run / "checkpoint.pt", parts=EVAL_PARTS, data_root=study.data_root,
                                   device=device, recalibrate_bn=recal, with_meta=True, splits=splits)
            m = _row(run.name, meta["config"], "holdout", "msp", recal, logits)
            tag = "_recal" if recal else ""
            row.update({f"accuracy{tag}": m["accuracy"], f"auroc{tag}": m["auroc"],
                        f"fpr95{tag}": m["fpr95"]})
        rows.append(row)
    df = pd.DataFrame(rows)
    results_dir = Path(results_dir)
    paths = {"bn_csv": results_dir / "bn_table.csv", "bn_md": results_dir / "bn_table.md"}
    atomic_write_text(paths["bn_csv"], df.to_csv(index=False))
    shown = pd.DataFrame({"model": df["model"], "--bn": df["bn"]})
    for tag, name in (("", "as trained"), ("_recal", "BN recalibrated")):
        shown[f"Acc. % ({name})"] = df[f"accuracy{tag}"].map("{:.2f}".format)
        shown[f"AUROC % ({name})"] = (100 * df[f"auroc{tag}"]).map("{:.2f}".format)
        shown[f"FPR95 % ({name})"] = (100 * df[f"fpr95{tag}"]).map("{:.2f}".format)
    atomic_write_text(paths["bn_md"], f"Preset {study.preset}, alpha {alpha:g}, seed {seed}, "
                      "holdout protocol, MSP; one seed: differences below about a point "
                      "are within seed noise.\n\n" + to_markdown(shown))
    return {k: str(v) for k, v in paths.items()}


def _finished(run: Path) -> bool:
    import json
    m = run / "metrics.json"
    try:
        return m.is_file() and bool(json.loads(m.read_text()).get("finished"))
    except ValueError:
        return False


def _describe(name: str, c: dict) -> dict:
    mixing = c["method"] in ("mixoe", "logit_mixoe")
    lc_mode = c.get("lc_mode", "fixed") if c["lc"] else ""
    return {"run": name, "method": c["method"], "lc": bool(c["lc"]), "lc_mode": lc_mode,
            "variant": ("lc-" + (lc_mode or "fixed")) if c["lc"] else "no-lc",
            "bn": _bn_label(c), "alpha": c["alpha"] if mixing else np.nan,
            "seed": c["seed"], "model": model_label(c["method"], c["lc"], c.get("lc_mode", "fixed"))}


def _row(name: str, config: dict, protocol: str, score: str, recalibrate_bn: bool,
         logits: dict) -> dict:
    """One results row: accuracy (%) on the protocol's ID part, OOD metrics of ``score``
    (convention ``ours``), as evaluation.evaluate_checkpoint computes them."""
    from .data.protocols import protocol_parts
    from .metrics import accuracy, metrics_by_convention
    from .scores import score as score_fn
    id_part, ood_part = protocol_parts(protocol)
    idt, ood = logits[id_part], logits[ood_part]
    m = metrics_by_convention(score_fn(score, idt["logits"]), score_fn(score, ood["logits"]), "ours")
    return {**_describe(name, config), "protocol": protocol, "score": score,
            "recalibrate_bn": recalibrate_bn, "accuracy": accuracy(idt["logits"], idt["labels"]),
            "auroc": m["auroc"], "fpr95": m["fpr95"], "n_id": int(len(idt["labels"])),
            "n_ood": int(len(ood["labels"]))}


#: quantiles of the logit norm stored per run and part (claim 2, figures)
NORM_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _norm_row(name: str, config: dict, logits: dict) -> dict:
    row = _describe(name, config)
    for part, key in (("id_test", "id"), ("ood_test", "ood"), ("paper_ood", "far")):
        n = np.linalg.norm(logits[part]["logits"].astype(np.float64), axis=1)
        row[f"{key}_norm_mean"] = float(n.mean())
        for q in NORM_QUANTILES:
            row[f"{key}_norm_q{int(q * 100):02d}"] = float(np.quantile(n, q))
        clipped = np.clip(n, NORM_BINS[0], NORM_BINS[-1])
        row[f"{key}_norm_hist"] = " ".join(str(int(v)) for v in
                                           np.histogram(clipped, bins=NORM_BINS)[0])
    return row


#: bins of the stored logit-norm histograms: 0, then 20 geometric bins per decade from
#: 0.01 to 1000, so that any scale of logits is resolved (norms beyond are clipped)
NORM_BINS = np.append(0.0, np.geomspace(0.01, 1000.0, 101))


def _train_one(cfg_dict: dict, out_dir: str, threads: int) -> tuple[str, float, str | None]:
    """Train one run; (name, seconds, error line or None): one failed run does not stop
    the others (rerun the study to retry it)."""
    import torch

    from .jobs import train_job
    if threads:
        torch.set_num_threads(threads)
    t0 = time.time()
    try:
        train_job(cfg_dict, out_dir)
        error = None
    except Exception as exc:  # noqa: BLE001 - reported per run, the study goes on
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return Path(out_dir).name, time.time() - t0, error


def _train_all(tasks: list, jobs: int):
    """Yield (run name, seconds, error) as runs finish; ``jobs`` processes of one thread each."""
    if jobs <= 1:
        for cfg, out in tasks:
            yield _train_one(cfg, out, 0)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_train_one, cfg, out, 1) for cfg, out in tasks]
        for f in as_completed(futures):
            yield f.result()


def add_parser(sub) -> None:
    from .batchnorm import BN_REGIMES
    p = sub.add_parser("study", help="the paper's claims tested with seeds (claims.py verdicts)")
    p.add_argument("--preset", default="fashion-mnist")
    p.add_argument("--out", required=True, help="study folder (runs/ inside)")
    p.add_argument("--results", default=None,
                   help="where results.csv, norms.csv and claims.csv go (default OUT/results)")
    p.add_argument("--alphas", nargs="+", type=float, default=[0.3, 1.0, 3.0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--bn", default="id-stats", choices=BN_REGIMES,
                   help="the one BatchNorm regime of every row (MixOE under separate is added)")
    p.add_argument("--lc-modes", nargs="+", default=list(LC_MODES), choices=LC_MODES)
    p.add_argument("--pretrain-epochs", type=int, default=None)
    p.add_argument("--finetune-epochs", type=int, default=None)
    p.add_argument("--limit-batches", type=int, default=None)
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at a time (one thread each)")
    p.add_argument("--max-runs", type=int, default=None,
                   help="train at most this many pending runs (in priority order), then evaluate")
    p.add_argument("--evaluate-only", action="store_true",
                   help="train nothing; evaluate the finished runs and write the verdicts")
    p.add_argument("--bn-table", action="store_true",
                   help="instead of the grid: each model under each BatchNorm regime (alpha 1, "
                        "seed 0), as trained and recalibrated, to bn_table.csv/.md")
    p.set_defaults(func=cmd_study)


def cmd_study(args) -> int:
    from .errors import UserError
    if "fixed" not in args.lc_modes:
        raise UserError("--lc-modes must include fixed (eq. 15), the reference of claim 5")
    if args.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {args.jobs}")
    study = Study(preset=args.preset, out=args.out, alphas=tuple(args.alphas),
                  seeds=tuple(args.seeds), bn=args.bn, lc_modes=tuple(args.lc_modes),
                  pretrain_epochs=args.pretrain_epochs, finetune_epochs=args.finetune_epochs,
                  limit_batches=args.limit_batches, data_root=args.data_root, device=args.device)
    for cfg in study.cells():            # every cell valid before anything trains
        cfg.resolved()
    results = Path(args.results or Path(args.out) / "results")
    if args.bn_table:
        print(f"study: {bn_table(study, results, jobs=args.jobs)}")
        return 0
    if not args.evaluate_only:
        print(study.run(jobs=args.jobs, log=lambda s: print(s, flush=True), max_runs=args.max_runs))
    from .claims import write_claims
    paths = study.evaluate(results)
    paths.update(write_claims(results))
    print(f"study: {paths}")
    return 0
