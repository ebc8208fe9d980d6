"""Where runs train: what one job runs, a local pool of processes (the study's), a sweep's
submitit jobs, their resources, their executor, and what became of them (Slurm states, the
error a job raised, in one line).

Resources follow the preset (``job_resources``): ``--timeout-min`` defaults to
TIMEOUT_MIN, CPUs per task are the preset's loader workers + 1, and jobs get one GPU each
where there are GPUs (round robin on a local machine). A job that runs out of time or is
pre-empted is requeued by submitit (``TrainJob.checkpoint``) and resumes.
"""
from __future__ import annotations

import multiprocessing as mp
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

from .config import RunConfig
from .data import get_preset
from .errors import UserError
from .train import train

#: default --timeout-min of one job, per preset: digits trains in seconds and Fashion-MNIST in
#: minutes on a CPU; a paper preset's 90-epoch ResNet-50 pretraining takes hours on one GPU,
#: and 24 h is within the time limit of most Slurm partitions
TIMEOUT_MIN = {"digits": 30, "fashion-mnist": 120}
PAPER_TIMEOUT_MIN = 24 * 60
#: default --parallel (cells running at a time) per executor
PARALLEL = {"local": 1, "debug": 1, "slurm": 8}
#: Slurm job states (sacct) of a job still queued or running, and of a job that ended badly
LIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING",
        "SUSPENDED", "PREEMPTED"}
ENDED_BADLY = {"FAILED", "TIMEOUT", "CANCELLED", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL",
               "DEADLINE"}


def train_job(cfg_dict: dict, out_dir: str) -> dict:
    """Train one run (module level, so it pickles by reference; the pool calls it too)."""
    return train(RunConfig.from_dict(cfg_dict), out_dir, progress=False)


class TrainJob:
    """What one job runs: ``train_job``. Its ``checkpoint`` method follows submitit's
    Checkpointable protocol: a job that times out or is pre-empted is requeued with the same
    arguments, and train() resumes after the last complete epoch."""

    def __call__(self, cfg_dict: dict, out_dir: str) -> dict:
        return train_job(cfg_dict, out_dir)

    def checkpoint(self, *args, **kwargs):
        from submitit.helpers import DelayedSubmission
        return DelayedSubmission(self, *args, **kwargs)


# ---- a local pool (the study) ---------------------------------------------------------

def _train_one(cfg_dict: dict, out_dir: str, threads: int) -> tuple[str, float, str | None]:
    """Train one run; (name, seconds, error line or None): one failed run does not stop
    the others (rerun to retry it)."""
    if threads:
        torch.set_num_threads(threads)
    t0 = time.time()
    try:
        train_job(cfg_dict, out_dir)
        error = None
    except Exception as exc:  # noqa: BLE001 - reported per run, the others go on
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        error = f"{type(exc).__name__}: {first}"
    return f"{Path(out_dir).parent.name}/{Path(out_dir).name}", time.time() - t0, error


def train_local(tasks: list, jobs: int):
    """Yield (``<parent>/<run>`` name, seconds, error) as the (config dict, run folder)
    ``tasks`` finish; ``jobs`` spawned processes of one thread each (``jobs`` 1: in this
    process, with its threads)."""
    if jobs <= 1:
        for cfg, out in tasks:
            yield _train_one(cfg, out, 0)
        return
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_train_one, cfg, out, 1) for cfg, out in tasks]
        for f in as_completed(futures):
            yield f.result()


# ---- resources ------------------------------------------------------------------------

def cuda_devices() -> int:
    """The number of CUDA GPUs torch sees on this machine."""
    return torch.cuda.device_count()


def default_timeout_min(preset: str) -> int:
    """TIMEOUT_MIN of the preset; PAPER_TIMEOUT_MIN for the ResNet-50 (paper) presets."""
    p = get_preset(preset)
    return TIMEOUT_MIN.get(p.name, PAPER_TIMEOUT_MIN if p.arch == "resnet50" else 60)


def job_resources(kind: str, preset: str, gpus: int | None = None, timeout_min: int | None = None,
                  partition: str | None = None, parallel: int | None = None,
                  mem_gb: int = 16) -> dict:
    """submitit parameters of every job (generic names; ``slurm_*`` for Slurm only).

    ``gpus`` per job defaults to one where GPUs are: on this machine when torch sees one
    (local), on Slurm for the ResNet-50 presets; ``timeout_min`` to default_timeout_min;
    CPUs per task are the preset's loader workers + 1 (the training process)."""
    p = get_preset(preset)
    if gpus is None:
        gpus = {"slurm": int(p.arch == "resnet50"), "local": int(cuda_devices() > 0)}.get(kind, 0)
    if gpus < 0:
        raise UserError(f"--gpus must be >= 0, got {gpus}")
    if kind == "local" and gpus > cuda_devices():
        raise UserError(f"--gpus {gpus} per job, but this machine has {cuda_devices()} GPU(s); "
                        f"pass --gpus {cuda_devices()} or fewer")
    timeout_min = default_timeout_min(preset) if timeout_min is None else timeout_min
    if timeout_min < 1:
        raise UserError(f"--timeout-min must be >= 1, got {timeout_min}")
    res = {"name": f"lmoe-viz-{p.name}", "timeout_min": timeout_min, "gpus_per_node": gpus,
           "cpus_per_task": p.num_workers + 1}
    if kind == "slurm":
        res.update(mem_gb=mem_gb, slurm_partition=partition,
                   slurm_array_parallelism=parallel_of(kind, parallel))
    return res


def parallel_of(kind: str, parallel: int | None) -> int:
    """``--parallel``: the given value, else the executor's default (PARALLEL, 1 for any other);
    UserError below 1."""
    parallel = PARALLEL.get(kind, 1) if parallel is None else parallel
    if parallel < 1:
        raise UserError(f"--parallel must be >= 1, got {parallel}")
    return parallel


def local_gpus(slot: int, gpus: int, devices: int) -> tuple:
    """The GPUs the local job in ``slot`` sees (CUDA_VISIBLE_DEVICES): ``gpus`` of the
    ``devices``, round robin, so jobs side by side use different GPUs while there are enough."""
    return tuple((slot * gpus + k) % devices for k in range(gpus)) if devices else ()


def make_executor(kind: str, folder, res: dict):
    """The submitit executor of ``kind`` (local, slurm or debug) with ``res`` (job_resources)."""
    import submitit
    if kind == "debug":
        return submitit.DebugExecutor(folder)
    if kind == "local":
        ex = submitit.LocalExecutor(folder)
        ex.update_parameters(**res)
        return ex
    if kind != "slurm":
        raise UserError(f"unknown executor {kind!r}; choose local, slurm or debug")
    try:
        ex = submitit.AutoExecutor(folder, cluster="slurm")
    except RuntimeError:
        raise UserError("--executor slurm needs Slurm's srun and sbatch on PATH; run the sweep on "
                        "the cluster's login node, or use --executor local") from None
    ex.update_parameters(**{k: v for k, v in res.items() if v not in (None, 0)})
    return ex


# ---- job states -----------------------------------------------------------------------

def slurm_states(job_ids) -> dict:
    """{job id: Slurm state} from one sacct call (submitit's parser); jobs sacct does not know
    are left out, and all of them without sacct."""
    job_ids = [j for j in job_ids if j]
    if not job_ids or shutil.which("sacct") is None:
        return {}
    from submitit.slurm.slurm import SlurmInfoWatcher
    watcher = SlurmInfoWatcher()
    for j in job_ids:
        watcher.register_job(str(j))
    watcher.update()
    states = {j: watcher.get_state(str(j), mode="cache").split()[0].upper() for j in job_ids}
    return {j: s for j, s in states.items() if s != "UNKNOWN"}


def one_line(text: str) -> str:
    """The last line of an error text, without the exception's module path."""
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else "no message"
    head, sep, tail = last.partition(": ")
    return f"{head.rsplit('.', 1)[-1]}{sep}{tail}" if sep and " " not in head else last


def job_paths(folder, job_id: str):
    """submitit's JobPaths (logs, result pickle) of job ``job_id``, task 0, in ``folder``."""
    from submitit.core.utils import JobPaths
    return JobPaths(folder, job_id=str(job_id), task_id=0)


def pickled_error(folder, job_id) -> str | None:
    """The error line of a job that raised (submitit's result pickle: ("error", trace))."""
    from submitit.core.utils import pickle_load
    path = job_paths(folder, job_id).result_pickle
    try:
        outcome, value = pickle_load(path)
    except Exception:  # noqa: BLE001 - no result yet, or not readable: nothing to report
        return None
    return one_line(value) if outcome == "error" else None


def job_error(job) -> str | None:
    """Wait for ``job``; None if it succeeded, else its error in one line (never pdb: the
    debug executor's ``exception()`` runs the job and returns what it raised)."""
    exc = job.exception()
    if exc is None:
        return None
    return pickled_error(job.paths.folder, job.job_id) or one_line(f"{type(exc).__name__}: {exc}")
