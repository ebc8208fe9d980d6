"""The one training loop: pretraining (CE on ID) and fine-tuning (any method).

SGD with momentum 0.9 and Nesterov, weight decay, a per-step cosine schedule (MixOE's
settings). On CUDA: bf16 autocast (no gradient scaler is needed for bf16), channels_last,
cudnn.benchmark, pinned memory and non-blocking copies. Under ``torchrun`` the model is
wrapped in DistributedDataParallel (NCCL on GPUs, gloo on CPU), ID and outlier streams
are sharded with DistributedSampler (``set_epoch`` each epoch) and rank 0 alone writes.

Determinism and resume. One seed drives everything: at the start of epoch ``e`` the torch,
numpy and python RNGs are reseeded from ``(seed, e)``, the samplers' order is a function
of ``(seed, e)`` and lambdas / CutMix boxes come from a numpy Generator seeded with
``(seed, e)``. A checkpoint is written atomically after every epoch with the model,
optimizer, scheduler, epoch, step, RNG states, history and lambdas; rerunning the same
command resumes after the last complete epoch and ends with the same metrics as a run
that was never interrupted. A finished run is not retrained.
"""
from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from .config import RunConfig
from .errors import TrainingError, UserError
from .extract import predict
from .io import atomic_write_json, dict_hash, file_sha256
from .methods import draw_mix, objective
from .metrics import accuracy, evaluate_logits
from .models import (arch_spec, build_model, check_arch, load_checkpoint,
                     model_from_checkpoint, save_checkpoint)
from .weights import load_initial_weights, weights_identity, weights_record

CKPT, METRICS = "checkpoint.pt", "metrics.json"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 17) % 2**31


def resolve_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UserError("--device cuda was asked for but no CUDA GPU is visible; "
                            "use --device cpu")
        local = int(os.environ.get("LOCAL_RANK", 0))
        return torch.device("cuda", local)
    return torch.device("cpu")


def dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: torch.device) -> bool:
    """Join the process group when started by torchrun (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1 or dist.is_initialized():
        return False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return True


def cosine_lambda(total_steps: int, lr: float = 1.0, eta_min: float = 1e-6):
    """Per-step cosine annealing of the LR factor from 1 down to eta_min / lr (MixOE's
    schedule: the LR reaches 1e-6 at the last step)."""
    floor = min(eta_min / lr, 1.0) if lr > 0 else 0.0
    return lambda step: floor + (1 - floor) * 0.5 * (
        1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "numpy_pos": int(np_state[2]), "python": list(random.getstate()[1]),
            "python_version": random.getstate()[0]}


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(("MT19937", s["numpy_keys"].numpy().astype(np.uint32), s["numpy_pos"], 0, 0.0))
    random.setstate((s["python_version"], tuple(s["python"]), None))


def train(cfg: RunConfig, out_dir, overwrite: bool = False, progress: bool = True) -> dict:
    """Train ``cfg`` into ``out_dir`` (resuming if a checkpoint of the same run is there)."""
    cfg = cfg.resolved()
    out_dir = Path(out_dir)
    device = resolve_device(cfg.device)
    ddp = init_distributed(device)
    rank, world = dist_info()
    init_ckpt = load_checkpoint(cfg.init) if cfg.init else None
    if cfg.method != "baseline" and init_ckpt is None:
        raise UserError(f"fine-tuning with method {cfg.method!r} needs --init CKPT "
                        "(a checkpoint from `lmoe-viz pretrain`)")
    identity = {**cfg.identity(), "init_sha256": file_sha256(cfg.init) if cfg.init else None,
                "weights": weights_identity(cfg.weights) if init_ckpt is None else None}
    run_hash = dict_hash(identity)
    ckpt_path = out_dir / CKPT
    resume = _existing_run(ckpt_path, run_hash, overwrite)
    if resume is not None and resume.get("finished"):
        return resume["final"]

    from .data import build_splits, get_preset
    preset = get_preset(cfg.preset)
    splits = build_splits(cfg)
    if cfg.select == "best-val" and (splits.id_val is None or len(splits.id_val) == 0):
        raise UserError(f"--select best-val needs validation images of the ID classes and preset "
                        f"{cfg.preset} has none (val.txt); pass --select last or fix val.txt")
    spec = arch_spec(preset.arch, splits.num_classes, preset.channels, cfg.input_size)
    if init_ckpt is not None:
        check_arch(init_ckpt, spec, cfg.init)
        model = model_from_checkpoint(init_ckpt)
        weights = init_ckpt.get("weights", {"name": "unknown", "file": None, "sha256": None})
    else:
        seed_everything(cfg.seed)
        model = build_model(preset.arch, splits.num_classes, preset.channels)
        weights = weights_record(cfg.weights)      # fetches ImageNet's file if not cached
        load_initial_weights(model, weights)
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True,
                          weight_decay=cfg.weight_decay)
    id_sampler = DistributedSampler(splits.id_train, world, rank, shuffle=True, seed=cfg.seed,
                                    drop_last=True)
    loader_kw = dict(batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                     pin_memory=device.type == "cuda", drop_last=len(id_sampler) > cfg.batch_size,
                     persistent_workers=False)
    id_loader = DataLoader(splits.id_train, sampler=id_sampler, **loader_kw)
    needs_aux = cfg.method != "baseline"
    aux_sampler, aux_loader = _aux_loader(splits, cfg, world, rank, loader_kw) if needs_aux else (None, None)
    steps_per_epoch = len(id_loader) if cfg.limit_batches is None else min(len(id_loader), cfg.limit_batches)
    total = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_lambda(total, cfg.lr))
    state = {"epoch": 0, "step": 0, "history": [], "lambdas": [], "best": None}
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        _set_rng_state(resume["rng"])
        state = {k: resume.get(k) for k in state}
    net = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None) if ddp else model
    h, w = splits.id_train[0][0].shape[-2:]
    base = {"config": cfg.to_dict(), "run_hash": run_hash, "seed": cfg.seed, "split": cfg.split,
            "arch": spec, "id_classes": splits.id_classes, "ood_classes": splits.ood_classes,
            "init_sha256": identity["init_sha256"], "weights": weights}
    for epoch in range(state["epoch"], cfg.epochs):
        t0 = time.time()
        es = epoch_seed(cfg.seed, epoch)
        seed_everything(es)
        id_sampler.set_epoch(epoch)
        aux_iter, aux_round = None, 0
        if needs_aux:
            aux_sampler.set_epoch(epoch)
            aux_iter = iter(aux_loader)
        mix_rng = np.random.default_rng([cfg.seed, epoch, 12345])
        sums: dict = {}
        net.train()
        bar = _bar(progress and rank == 0, steps_per_epoch, f"{cfg.method} epoch {epoch + 1}/{cfg.epochs}")
        for i, (x, y, _) in enumerate(id_loader):
            if i >= steps_per_epoch:
                break
            x = _to(x, device)
            y = y.to(device, non_blocking=True)
            x_out, lam, box = None, 1.0, None
            if needs_aux:
                try:
                    x_out = next(aux_iter)[0]
                except StopIteration:
                    aux_round += 1
                    aux_sampler.set_epoch(epoch * 1000 + aux_round)
                    aux_iter = iter(aux_loader)
                    x_out = next(aux_iter)[0]
                x_out = _to(x_out, device)
                if cfg.method in ("mixoe", "logit_mixoe"):
                    lam, box = draw_mix(mix_rng, cfg.alpha, cfg.mix_op, h, w)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss, terms = objective(net, cfg, splits.num_classes, x, y, x_out, lam, box)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, step {state['step'] + 1}; "
                    f"the last good checkpoint in {out_dir} is kept: lower --lr or check the data")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            state["step"] += 1
            if "lam" in terms:
                state["lambdas"].append(terms["lam"])
            for k, v in {"loss": loss.item(), **terms}.items():
                sums[k] = sums.get(k, 0.0) + v
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
        if bar is not None:
            bar.close()
        state["epoch"] = epoch + 1
        if rank == 0:
            finished = epoch + 1 == cfg.epochs
            record = {"epoch": epoch + 1, "seconds": round(time.time() - t0, 3),
                      "lr": sched.get_last_lr()[0],
                      **{f"train_{k}": v / max(steps_per_epoch, 1) for k, v in sums.items()},
                      **epoch_metrics(model, splits, device)}
            state["history"].append(record)
            _track_best(state, record, model, cfg.select)
            final = None
            if finished:
                _select_weights(model, state, cfg.select)
                final = _final_metrics(model, splits, device, cfg, state, run_hash, world, weights)
            save_checkpoint(ckpt_path, {**base, **_saved_state(state, finished),
                                        "model": model.state_dict(),
                                        "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                        "rng": _rng_state(), "finished": finished, "final": final})
            atomic_write_json(out_dir / METRICS, {**(final or _partial(record, cfg, run_hash)),
                                                 "history": state["history"],
                                                 "lambdas": state["lambdas"], "finished": finished})
        if ddp:
            dist.barrier()
    if ddp:
        dist.destroy_process_group()
    return load_checkpoint(ckpt_path)["final"] if rank == 0 else {}


def _aux_loader(splits, cfg, world, rank, loader_kw):
    """The outlier stream: ``aux_ratio`` x the ID batch (MixOE's OE: 2), whole batches."""
    batch = cfg.batch_size * cfg.aux_ratio
    if len(splits.aux) < batch * world:
        raise UserError(f"the outlier set holds {len(splits.aux)} images, fewer than one outlier "
                        f"batch ({cfg.batch_size} x aux_ratio {cfg.aux_ratio} x {world} process(es)); "
                        "lower --batch-size or --aux-ratio, or add outliers")
    sampler = DistributedSampler(splits.aux, world, rank, shuffle=True, seed=cfg.seed + 1,
                                 drop_last=True)
    return sampler, DataLoader(splits.aux, sampler=sampler, **{**loader_kw, "batch_size": batch,
                                                               "drop_last": True})


def evaluate(model, splits, device, score: str = "msp") -> dict:
    """Accuracy (%) on ID test and OOD metrics (MSP by default) on ID vs OOD test: the
    ``holdout`` protocol with our metric conventions (evaluation.py has all protocols)."""
    idt, ood = predict(model, splits.id_test, device), predict(model, splits.ood_test, device)
    return {**evaluate_logits(idt["logits"], idt["labels"], ood["logits"], score),
            "protocol": "holdout", "metric_convention": "ours"}


def epoch_metrics(model, splits, device) -> dict:
    """What each epoch records: validation accuracy where the preset has a val split (the
    paper presets: test sets are evaluated once, on the selected model), otherwise the
    full test metrics (the small embedded presets, where it is cheap)."""
    if splits.id_val is not None:
        v = predict(model, splits.id_val, device)
        return {"val_accuracy": accuracy(v["logits"], v["labels"])}
    return evaluate(model, splits, device)


def _track_best(state: dict, record: dict, model, select: str) -> None:
    """MixOE's model selection: keep the weights of the epoch with the best validation
    top-1 accuracy (strictly better: the earliest of equal epochs is kept)."""
    if select != "best-val":
        return
    best = state["best"]
    if best is None or record["val_accuracy"] > best["val_accuracy"]:
        state["best"] = {"epoch": record["epoch"], "val_accuracy": record["val_accuracy"],
                         "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}


def _select_weights(model, state: dict, select: str) -> None:
    """Load the selected epoch's weights into ``model`` (best-val; last: nothing to do)."""
    if select == "best-val":
        model.load_state_dict(state["best"]["model"])


def _final_metrics(model, splits, device, cfg, state, run_hash, world, weights) -> dict:
    selected = state["best"]["epoch"] if cfg.select == "best-val" else state["epoch"]
    metrics = evaluate(model, splits, device)
    if splits.id_val is not None:
        metrics["val_accuracy"] = state["history"][selected - 1]["val_accuracy"]
    return {**metrics, "epoch": state["epoch"], "select": cfg.select, "selected_epoch": selected,
            "run_hash": run_hash, "config": cfg.to_dict(), "world_size": world,
            "steps": state["step"], "weights": weights, **splits.describe()}


def _saved_state(state: dict, finished: bool) -> dict:
    """The resumable state; a finished run no longer carries the best-epoch copy."""
    out = dict(state)
    if finished and out["best"] is not None:
        out["best"] = {k: v for k, v in out["best"].items() if k != "model"}
    return out


def _partial(record: dict, cfg, run_hash: str) -> dict:
    return {**{k: v for k, v in record.items() if k not in ("seconds", "lr")},
            "run_hash": run_hash, "config": cfg.to_dict()}


def _existing_run(ckpt_path: Path, run_hash: str, overwrite: bool):
    """The checkpoint to resume from, None to start afresh; refuse another run's folder."""
    if not ckpt_path.exists():
        return None
    if overwrite:
        return None
    ckpt = load_checkpoint(ckpt_path)
    if ckpt.get("run_hash") != run_hash:
        raise UserError(f"{ckpt_path.parent} holds a run of a different config "
                        f"(run {ckpt.get('run_hash')}, this one {run_hash}); choose another --out "
                        "or pass --overwrite")
    return ckpt


def _to(x, device):
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x


def _bar(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, leave=False)
