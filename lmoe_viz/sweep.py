"""``lmoe-viz sweep``: a grid of runs through submitit, on a Slurm cluster or on this machine.

One shared pretrained model is trained first, then every cell (alpha x method x L_LC x seed,
plus OE) is an ordinary ``train()`` run in its own folder ``DIR/runs/<cell>``. A cell whose
folder holds a finished run of the same config (metrics.json ``finished`` with the
``run_hash`` train() gives it) is never submitted again, and a killed, timed-out or
pre-empted job resumes from its last epoch: rerunning the same command resumes a sweep.

``--executor slurm`` submits and returns. The pretraining is one job; every unfinished cell
goes into ONE job array (``#SBATCH --array=0-K%P``, at most ``--parallel`` P running) that
starts when the pretraining has succeeded (``--dependency=afterok:<id>``; if it fails, Slurm
cancels the array: ``--kill-on-invalid-dep=yes``). The job ids go to ``DIR/sweep.json``;
``lmoe-viz sweep --status DIR`` shows each cell's state and, once every cell has finished,
gathers the results table ``DIR/tables/table1.*``. Resubmitting submits only the cells that
are neither finished nor still queued or running (Slurm's sacct says which).

``--executor local`` runs the jobs as processes of this machine (submitit's LocalExecutor),
``--parallel`` at a time, each with a GPU of its own (round robin) when torch sees GPUs;
``--executor debug`` runs them in this process. Both wait and write the table.

Jobs, their resources and states: jobs.py.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from .data.ssb import split_value
from .errors import UserError
from .grid import PRETRAINED, Grid
from .io import atomic_write_json
from .jobs import (ENDED_BADLY, LIVE, PARALLEL, PAPER_TIMEOUT_MIN, TIMEOUT_MIN, TrainJob,
                   cuda_devices, job_error, job_paths, job_resources, local_gpus, make_executor, one_line,
                   parallel_of, pickled_error, slurm_states)
from .methods import MIXING
from .metrics import METRIC_CONVENTIONS
from .tables import export_table, summary_table
from .train import finished, read_metrics

MANIFEST = "sweep.json"


# ---- which runs are finished ----------------------------------------------------------

def _runs(grid: Grid) -> list:
    """[(name, config, run folder)]: the pretraining first, then the cells."""
    pre = [(PRETRAINED, grid.pretrain_config(), Path(grid.runs_dir) / PRETRAINED)]
    return pre + [(grid.run_dir(c).name, c, grid.run_dir(c)) for c in grid.cells()]


def gather_table(grid: Grid, tables_dir, convention: str = "ours") -> dict:
    """The results table of the grid's finished runs (other runs in its folder stay out),
    holdout protocol, MSP, metric ``convention`` (metrics.py): tables_dir/table1.*."""
    return export_table(summary_table(grid.table(convention=convention)), tables_dir)


# ---- the manifest DIR/sweep.json ------------------------------------------------------

def write_manifest(out_dir, grid: Grid, kind: str, jobs: dict, folder,
                   convention: str = "ours") -> None:
    """Write DIR/sweep.json: the executor, submission time, grid, its runs, the job ids, the
    submitit log folder and the metric convention."""
    atomic_write_json(Path(out_dir) / MANIFEST, {
        "executor": kind, "submitted": time.strftime("%Y-%m-%d %H:%M:%S"),
        "grid": dataclasses.asdict(grid), "runs": [name for name, _, _ in _runs(grid)],
        "jobs": jobs, "log_folder": str(folder), "metric_convention": convention})


def read_manifest(out_dir) -> dict | None:
    """The content of DIR/sweep.json; None when there is none."""
    path = Path(out_dir) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def grid_of(manifest: dict) -> Grid:
    """The Grid a manifest records (its JSON lists back as tuples)."""
    return Grid(**{k: tuple(v) if isinstance(v, list) else v for k, v in manifest["grid"].items()})


# ---- running a sweep ------------------------------------------------------------------

def run_sweep(grid: Grid, out_dir, executor: str = "local", parallel: int | None = None,
              gpus: int | None = None, timeout_min: int | None = None,
              partition: str | None = None, convention: str = "ours") -> dict:
    """Slurm: submit and return the job ids; local / debug: run every unfinished run and
    write the table (metric ``convention``). Runs already finished are not submitted."""
    out_dir = Path(out_dir)
    folder = Path(grid.runs_dir) / "_submitit"
    res = job_resources(executor, grid.preset, gpus, timeout_min, partition, parallel)
    ex = make_executor(executor, folder, res)
    todo = [(n, c, d) for n, c, d in _runs(grid) if not finished(d, c)]
    if executor == "slurm":
        return submit_slurm(ex, grid, out_dir, todo, folder, convention)
    t0 = time.time()
    jobs: dict = {}
    errors = run_local(ex, res, todo, parallel_of(executor, parallel), jobs,
                       lambda: write_manifest(out_dir, grid, executor, jobs, folder, convention))
    if errors:
        raise UserError(f"{len(errors)} run(s) failed: " + "; ".join(errors)
                        + f"; logs under {folder}; rerun the sweep to resume")
    paths = gather_table(grid, out_dir / "tables", convention)
    return {"cells": len(grid.cells()), "seconds": round(time.time() - t0, 1), "tables": paths}


def run_local(ex, res: dict, todo: list, parallel: int, jobs: dict, record) -> list:
    """Run ``todo`` with a waiting executor: the pretraining, then the cells ``parallel`` at a
    time (slot k of a batch gets local_gpus(k)). Returns the error lines of failed cells; a
    failed pretraining raises one UserError line naming its log."""
    devices = cuda_devices() if res.get("gpus_per_node") else 0

    def submit(name, cfg, out, slot):
        if devices:
            ex.update_parameters(visible_gpus=local_gpus(slot, res["gpus_per_node"], devices))
        job = ex.submit(TrainJob(), cfg.to_dict(), str(out))
        jobs[name] = job.job_id
        return job
    if todo and todo[0][0] == PRETRAINED:
        job = submit(*todo.pop(0), 0)
        record()
        err = job_error(job)
        if err:
            log = f"; its log is {job.paths.stderr}" if job.paths.stderr.exists() else ""
            raise UserError(f"the pretraining job failed ({err}){log}; fix it and rerun the sweep")
    errors = []
    for i in range(0, len(todo), parallel):
        batch = [(name, submit(name, cfg, out, k)) for k, (name, cfg, out) in enumerate(todo[i:i + parallel])]
        record()
        errors += [f"{name} ({err})" for name, job in batch if (err := job_error(job))]
    return errors


def submit_slurm(ex, grid: Grid, out_dir: Path, todo: list, folder: Path,
                 convention: str = "ours") -> dict:
    """Submit the pretraining (unless finished or still queued) and the unfinished cells as one
    job array after it (afterok); record the ids in DIR/sweep.json; do not wait."""
    if not todo:
        paths = gather_table(grid, out_dir / "tables", convention)
        return {"cells": len(grid.cells()), "submitted": 0, "jobs": {}, "tables": paths}
    old = (read_manifest(out_dir) or {}).get("jobs", {})
    states = slurm_states(old.get(n) for n, _, _ in todo)
    live = {n: old[n] for n, _, _ in todo if states.get(old.get(n)) in LIVE}
    pre_job = live.get(PRETRAINED)
    if todo[0][0] == PRETRAINED and pre_job is None:
        _, cfg, run_dir = todo[0]
        pre_job = _sbatch(lambda: ex.submit(TrainJob(), cfg.to_dict(), str(run_dir))).job_id
        live = {}   # cells still queued after an earlier, failed pretraining never start: renew them
    cells = [(n, c, d) for n, c, d in todo if n != PRETRAINED and n not in live]
    if cells and pre_job is not None:
        ex.update_parameters(slurm_additional_parameters={
            "dependency": f"afterok:{pre_job}", "kill-on-invalid-dep": "yes"})
    jobs = _sbatch(lambda: ex.map_array(TrainJob(), [c.to_dict() for _, c, _ in cells],
                                        [str(d) for _, _, d in cells])) if cells else []
    ids = {**live, **({PRETRAINED: pre_job} if pre_job else {}),
           **{n: j.job_id for (n, _, _), j in zip(cells, jobs)}}
    write_manifest(out_dir, grid, "slurm", ids, folder, convention)
    return {"cells": len(grid.cells()), "submitted": len(cells), "pretrain_job": pre_job,
            "array_job": jobs[0].job_id.split("_")[0] if jobs else None, "jobs": ids,
            "still_queued": sorted(n for n in live if n != PRETRAINED),
            "finished": len(grid.cells()) + 1 - len(todo)}


def _sbatch(submit):
    """Run a submission; sbatch's refusal (a bad partition, time or GPU count) is one line."""
    try:
        return submit()
    except Exception as exc:  # noqa: BLE001 - submitit wraps sbatch's stderr in several types
        raise UserError(f"sbatch refused the job: {one_line(exc)}; check --partition, --gpus "
                        "and --timeout-min against the cluster's limits") from None


# ---- --status -------------------------------------------------------------------------

def run_state(cfg, run_dir, job, folder, states) -> tuple[str, str]:
    """(state, detail) of one run: finished, failed, running (epoch e/E) or pending."""
    if finished(run_dir, cfg):
        return "finished", ""
    log = f"; log {job_paths(folder, job).stderr}" if job else ""
    err = pickled_error(folder, job) if job else None
    slurm = states.get(job, "")
    if err or slurm in ENDED_BADLY:
        return "failed", (err or f"Slurm state {slurm}") + log
    m = read_metrics(run_dir)
    if m and m.get("finished"):
        return "failed", f"{run_dir} holds a run of another config; use another --out{log}"
    epoch = f"epoch {len(m.get('history', []))}/{m['config']['epochs']} done" if m else ""
    if slurm in ("", "RUNNING", "COMPLETING") and m:
        return "running", epoch
    return "pending", " ".join(x for x in (epoch, f"job {job}" if job else "") if x)


def sweep_status(out_dir) -> dict:
    """Print every run's state and a count line; gather the table once every run finished."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    if manifest is None:
        raise UserError(f"no sweep in {out_dir} ({MANIFEST} not found); start one with "
                        f"`lmoe-viz sweep --out {out_dir} ...`")
    grid, jobs, folder = grid_of(manifest), manifest.get("jobs", {}), manifest["log_folder"]
    states = slurm_states(jobs.values()) if manifest["executor"] == "slurm" else {}
    print(f"sweep {out_dir} ({manifest['executor']}, submitted {manifest['submitted']})")
    counts: dict = {}
    for name, cfg, run_dir in _runs(grid):
        state, detail = run_state(cfg, run_dir, jobs.get(name), folder, states)
        counts[state] = counts.get(state, 0) + (name != PRETRAINED)
        print(f"  {name:<40} {state:<9} {detail}".rstrip())
    n = len(grid.cells())
    print(f"{counts.get('finished', 0)} of {n} cells finished, " + ", ".join(
        f"{counts.get(s, 0)} {s}" for s in ("running", "pending", "failed")))
    if counts.get("finished", 0) == n:
        paths = gather_table(grid, out_dir / "tables", manifest.get("metric_convention", "ours"))
        print(f"all done; table {paths['md']}")
        return {"done": True, "counts": counts, "tables": paths}
    return {"done": False, "counts": counts}


# ---- command line ---------------------------------------------------------------------

def add_parser(sub) -> None:
    """Add the ``sweep`` subcommand and its options to ``sub``."""
    p = sub.add_parser("sweep", help="run a grid through submitit (Slurm or local)")
    p.add_argument("--preset", default="digits")
    p.add_argument("--out", default=None, help="sweep folder (runs/, tables/, sweep.json inside)")
    p.add_argument("--status", default=None, metavar="DIR",
                   help="show the state of the sweep in DIR; gather its table when every cell finished")
    p.add_argument("--methods", nargs="+", default=list(MIXING))
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
    p.add_argument("--split", type=split_value, default=0, help="an integer seed, or ssb (data/ssb.py)")
    p.add_argument("--metric-convention", default="ours", metavar="{" + ",".join(METRIC_CONVENTIONS) + "}",
                   help="metric convention of the table (metrics.py): ours, mixoe or openood")
    p.add_argument("--executor", default="local", choices=("local", "slurm", "debug"),
                   help="local (processes here, waits), slurm (submits a job array, returns) "
                        "or debug (in this process)")
    p.add_argument("--parallel", type=int, default=None,
                   help=f"cells running at a time (default {PARALLEL['local']} locally, "
                        f"{PARALLEL['slurm']} on Slurm: the job array's limit)")
    p.add_argument("--timeout-min", type=int, default=None,
                   help=f"time limit of one job (default by preset: {TIMEOUT_MIN}, paper "
                        f"presets {PAPER_TIMEOUT_MIN}); a job that runs out is requeued and resumes")
    p.add_argument("--partition", default=None, help="Slurm partition")
    p.add_argument("--gpus", type=int, default=None,
                   help="GPUs per job (default 1 where there are GPUs: local when torch sees "
                        "one, Slurm for the paper presets; else 0)")
    p.set_defaults(func=cmd_sweep)


def grid_from_args(args) -> Grid:
    """The Grid of the sweep options: runs in ``--out``/runs, ``--lc`` off / on / both as the
    L_LC settings, ``--bn reference`` as each method's own regime (None); UserError for an
    unknown ``--lc`` value."""
    lcs = {"off": (False,), "on": (True,), "both": (False, True)}
    try:
        lc = tuple(sorted({v for x in args.lc for v in lcs[x]}))
    except KeyError as exc:
        raise UserError(f"unknown --lc value {exc.args[0]!r}; use off, on or both") from None
    return Grid(preset=args.preset, runs_dir=str(Path(args.out).resolve() / "runs"),
                methods=tuple(args.methods), lcs=lc, alphas=tuple(args.alphas),
                seeds=tuple(args.seeds), include_oe=not args.no_oe,
                pretrain_epochs=args.pretrain_epochs, finetune_epochs=args.finetune_epochs,
                data_root=args.data_root, device=args.device, split=args.split,
                limit_batches=args.limit_batches, bn=None if args.bn == "reference" else args.bn,
                lc_modes=tuple(args.lc_modes))


def cmd_sweep(args) -> int:
    """``lmoe-viz sweep``: with ``--status DIR`` print that sweep's state; else validate every
    run and the metric convention, run the grid (run_sweep) and print the table or what was
    submitted. Returns 0; UserError without ``--out``."""
    if args.status:
        sweep_status(args.status)
        return 0
    if not args.out:
        raise UserError("sweep needs --out DIR (where the runs go), or --status DIR")
    grid = grid_from_args(args)
    for _, cfg, _ in _runs(grid):        # validate every run before submitting anything
        cfg.resolved()
    if args.metric_convention not in METRIC_CONVENTIONS:
        raise UserError(f"unknown --metric-convention {args.metric_convention!r}; choose one of "
                        f"{', '.join(METRIC_CONVENTIONS)}")
    res = run_sweep(grid, args.out, args.executor, args.parallel, args.gpus, args.timeout_min,
                    args.partition, args.metric_convention)
    if args.executor != "slurm":
        print(f"sweep: {res['cells']} cells in {res['seconds']} s; table {res['tables']['md']}")
    elif not res["submitted"] and "tables" in res:
        print(f"sweep: all {res['cells']} cells finished; table {res['tables']['md']}")
    else:
        _print_submitted(res, args.out)
    return 0


def _print_submitted(res: dict, out) -> None:
    pre, array = res["pretrain_job"], res["array_job"]
    cells = (f"{res['submitted']} cell(s) in job {array}" + (f" after job {pre} succeeds" if pre else "")
             if array else "no cell submitted")
    print(f"sweep: {f'pretraining job {pre}' if pre else 'pretraining finished'}; {cells}; "
          f"{res['finished']} run(s) finished before, {len(res['still_queued'])} cell(s) still queued")
    print(f"follow it with: lmoe-viz sweep --status {out}")
