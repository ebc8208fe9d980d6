"""Where a run executes: device, processes (DDP), seeds and RNG states.

The low layer under ``train.py`` and ``extract.py`` (both import it; it imports neither).

* ``resolve_device``: ``auto`` is the local CUDA GPU of this process (``LOCAL_RANK``) when
  one is visible, the CPU otherwise.
* ``init_distributed``: joins the process group when started by ``torchrun``
  (``WORLD_SIZE > 1``): NCCL on GPUs, gloo on CPU, with a collective timeout of
  ``DDP_TIMEOUT`` (evaluation is sharded across ranks, so no rank waits the length of a
  test set at a barrier; the timeout only catches a real hang).
* One seed drives everything: ``epoch_seed(seed, e)`` reseeds the torch, numpy and python
  RNGs at the start of epoch ``e``; the states are saved in every checkpoint.
"""
from __future__ import annotations

import datetime
import os
import random

import numpy as np
import torch
import torch.distributed as dist

from .errors import UserError

#: collective timeout of a DDP run: long enough for the largest pause between collectives
#: (a checkpoint write of ResNet-50 on a slow filesystem), short of hiding a hang for hours
DDP_TIMEOUT = datetime.timedelta(minutes=60)


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's (``seed mod 2**32``) and torch's RNGs with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` of a run of ``seed``: (seed * 1000003 + epoch * 7919 + 17)
    mod 2**31."""
    return (seed * 1_000_003 + epoch * 7919 + 17) % 2**31


def rank_seed(seed: int, rank: int) -> int:
    """The torch / numpy / python seed of DDP rank ``rank``: rank 0 keeps ``seed`` (a
    single process trains as before), every other rank its own, so ranks draw their own
    feature noise and augmentations. Lambdas and CutMix boxes come from their own
    generator, the same on every rank (one lambda a step, as MixOE)."""
    return seed if rank == 0 else (seed + 104_729 * rank) % 2**31


#: the values of ``--device``
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``--device``: ``cuda``, or ``auto`` with a GPU visible, is the GPU of ``LOCAL_RANK``
    (default 0); ``cpu``, or ``auto`` without one, the CPU. UserError for ``cuda`` without a
    visible GPU, and for any other value (never a silent fall back to the CPU)."""
    if name not in DEVICES:
        raise UserError(f"unknown --device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UserError("--device cuda was asked for but no CUDA GPU is visible; "
                            "use --device cpu")
        local = int(os.environ.get("LOCAL_RANK", 0))
        return torch.device("cuda", local)
    return torch.device("cpu")


def as_device(device):
    """``device`` as the training loop and extraction take it: a ``--device`` string
    (DEVICES) resolved by ``resolve_device``, anything else (a torch.device, ``"cuda:1"``)
    as given."""
    return resolve_device(device) if device in DEVICES else device


def dist_info() -> tuple[int, int]:
    """(rank, world size): (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: torch.device) -> bool:
    """Join the process group when started by torchrun (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1 or dist.is_initialized():
        return False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=DDP_TIMEOUT)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return True


def sync_from_rank0(model) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics) before a sharded
    evaluation: DDP keeps parameters equal, but each rank's last training forward moved
    its own running statistics, and rank 0's are the ones the checkpoint saves."""
    if dist.is_available() and dist.is_initialized():
        for buf in model.buffers():
            dist.broadcast(buf, 0)


def available_cpus() -> int:
    """CPUs this process may use (its affinity mask, e.g. a Slurm allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:     # not on Linux
        return os.cpu_count() or 1


def default_workers(preset_workers: int) -> int:
    """Loader workers: the preset's number, capped by the CPUs left beside the main
    process (the paper presets ask for 8; a 2-core laptop gets 1)."""
    if preset_workers <= 0:
        return 0
    return max(1, min(preset_workers, available_cpus() - 1))


def rng_state() -> dict:
    """The torch, numpy (MT19937 keys and position) and python RNG states, as tensors, numbers
    and lists a weights-only checkpoint can hold."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "numpy_pos": int(np_state[2]), "python": list(random.getstate()[1]),
            "python_version": random.getstate()[0]}


def set_rng_state(s: dict) -> None:
    """Restore the states of rng_state (numpy's cached Gaussian and python's gauss_next are
    reset, and CUDA's generators are not saved: every training epoch reseeds all of them,
    torch's on every device included (train._train_epoch, seed_everything), and a run
    resumes at an epoch boundary, so no draw depends on them; saving them would change the
    checkpoint's bytes, and so its sha256, against the committed records)."""
    torch.set_rng_state(s["torch"])
    np.random.set_state(("MT19937", s["numpy_keys"].numpy().astype(np.uint32), s["numpy_pos"], 0, 0.0))
    random.setstate((s["python_version"], tuple(s["python"]), None))
