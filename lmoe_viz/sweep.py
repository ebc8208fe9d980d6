"""``lmoe-viz sweep``: a grid of runs through submitit, Slurm on a cluster or local.

One shared pretrained model is trained first (one job), then every cell (alpha x method x
L_LC x seed, plus OE) is one job; ``--parallel K`` cells run at a time. Every cell is an
ordinary ``train()`` run in its own folder, so a killed or pre-empted job resumes from its
last epoch when the sweep is submitted again, and finished cells return at once. The
results are gathered into the one results table (``DIR/tables/table1.*``).

``--executor local`` runs jobs as local processes (submitit's LocalExecutor);
``--executor slurm`` submits with sbatch (``--partition``, ``--gpus``, ``--timeout-min``...).
"""
from __future__ import annotations

import time
from pathlib import Path

from .errors import UserError
from .experiments import PRETRAINED, Grid, export_table, results_table, summary_table


def _train_job(cfg_dict: dict, out_dir: str) -> dict:
    """What one job runs (module level, so it pickles by reference)."""
    from .config import RunConfig
    from .train import train
    return train(RunConfig.from_dict(cfg_dict), out_dir, progress=False)


def make_executor(kind: str, folder: Path, timeout_min: int = 60, partition: str | None = None,
                  gpus: int = 0, cpus: int = 4, mem_gb: int = 16):
    import submitit
    if kind not in ("local", "slurm", "debug"):
        raise UserError(f"unknown executor {kind!r}; choose local, slurm or debug")
    ex = submitit.AutoExecutor(folder=str(folder), cluster=kind)
    params = {"timeout_min": timeout_min, "name": "lmoe-viz"}
    if kind == "slurm":
        params.update(slurm_partition=partition, gpus_per_node=gpus, cpus_per_task=cpus,
                      mem_gb=mem_gb)
        params = {k: v for k, v in params.items() if v is not None}
    ex.update_parameters(**params)
    return ex


def run_sweep(grid: Grid, tables_dir, executor: str = "local", parallel: int = 1,
              **executor_kw) -> dict:
    runs = Path(grid.runs_dir)
    ex = make_executor(executor, runs / "_submitit", **executor_kw)
    t0 = time.time()
    pre = grid.pretrain_config()
    ex.submit(_train_job, pre.to_dict(), str(runs / PRETRAINED)).result()
    cells = grid.cells()
    for i in range(0, len(cells), max(parallel, 1)):
        jobs = [ex.submit(_train_job, c.to_dict(), str(grid.run_dir(c)))
                for c in cells[i:i + max(parallel, 1)]]
        for job, cfg in zip(jobs, cells[i:i + max(parallel, 1)]):
            try:
                job.result()
            except Exception as exc:  # noqa: BLE001 - report which cell failed and how to resume
                raise UserError(f"cell {grid.run_dir(cfg).name} failed ({str(exc).strip().splitlines()[-1]}); "
                                f"its log is under {runs / '_submitit'}; rerun the sweep to resume") from None
    table = results_table(runs)
    paths = export_table(summary_table(table), tables_dir)
    return {"cells": len(cells), "seconds": round(time.time() - t0, 1), "tables": paths}


def add_parser(sub) -> None:
    p = sub.add_parser("sweep", help="run a grid through submitit (Slurm or local)")
    p.add_argument("--preset", default="digits")
    p.add_argument("--out", required=True, help="sweep folder (runs/ and tables/ inside)")
    p.add_argument("--methods", nargs="+", default=["mixoe", "logit_mixoe"])
    p.add_argument("--lc", nargs="+", default=["off", "on"], help="off, on or both")
    p.add_argument("--alphas", nargs="+", type=float, default=[0.1, 0.3, 1.0, 3.0, 5.0, 10.0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--no-oe", action="store_true", help="leave out the OE baseline")
    p.add_argument("--bn", default="id-stats", choices=("separate", "joint", "id-stats", "reference"),
                   help="one BatchNorm regime for every cell (as the notebooks: id-stats), or "
                        "reference: each method's reference code (faithful reproduction)")
    p.add_argument("--lc-modes", nargs="+", default=["fixed"],
                   help="L_LC variants of the cells with L_LC: fixed, outlier-share, stop-id, norm")
    p.add_argument("--pretrain-epochs", type=int, default=None)
    p.add_argument("--finetune-epochs", type=int, default=None)
    p.add_argument("--limit-batches", type=int, default=None)
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--split", type=int, default=0)
    p.add_argument("--executor", default="local", help="local, slurm or debug (in-process)")
    p.add_argument("--parallel", type=int, default=1, help="cells running at a time")
    p.add_argument("--timeout-min", type=int, default=60)
    p.add_argument("--partition", default=None)
    p.add_argument("--gpus", type=int, default=0)
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args) -> int:
    lcs = {"off": (False,), "on": (True,), "both": (False, True)}
    try:
        lc = tuple(sorted({v for x in args.lc for v in lcs[x]}))
    except KeyError as exc:
        raise UserError(f"unknown --lc value {exc.args[0]!r}; use off, on or both") from None
    grid = Grid(preset=args.preset, runs_dir=str(Path(args.out) / "runs"), methods=tuple(args.methods),
                lcs=lc, alphas=tuple(args.alphas), seeds=tuple(args.seeds), include_oe=not args.no_oe,
                pretrain_epochs=args.pretrain_epochs, finetune_epochs=args.finetune_epochs,
                data_root=args.data_root, device=args.device, split=args.split,
                limit_batches=args.limit_batches, bn=None if args.bn == "reference" else args.bn,
                lc_modes=tuple(args.lc_modes))
    for cfg in grid.cells():          # validate every cell before submitting anything
        cfg.validate()
    res = run_sweep(grid, Path(args.out) / "tables", args.executor, args.parallel, timeout_min=args.timeout_min,
                    partition=args.partition, gpus=args.gpus)
    print(f"sweep: {res['cells']} cells in {res['seconds']} s; table {res['tables']['md']}")
    return 0
