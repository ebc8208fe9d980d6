"""The one training loop: pretraining (CE on ID) and fine-tuning (any method).

SGD with momentum 0.9 and Nesterov, weight decay, a per-step cosine schedule (MixOE's
settings). On CUDA: bf16 autocast (no gradient scaler is needed for bf16), channels_last,
cudnn.benchmark, pinned memory, non-blocking copies and the fused SGD kernel;
``compile=True`` runs the network through ``torch.compile``. Under ``torchrun`` the model
is wrapped in DistributedDataParallel (runtime.py), the streams are sharded per rank
(streams.py), evaluation is sharded too and rank 0 alone writes.

The host is not a bottleneck of the step: loss terms are summed on the device and read
once per log interval; a non-finite loss is detected on the device and checked every
``CHECK_EVERY`` steps and at the end of each epoch (still naming the first bad epoch and
step; under DDP every rank stops with the same message). Evaluation runs only where it is
used: the validation split each epoch for ``select=best-val`` (MixOE's model selection),
the test sets once on the selected model at the end, and every ``eval_every`` epochs for
users who want curves.

Determinism and resume. One seed drives everything: at the start of epoch ``e`` the torch,
numpy and python RNGs are reseeded from ``(seed, e)``, the streams' order is a function of
``(seed, e)`` and lambdas / CutMix boxes come from a numpy Generator seeded with
``(seed, e)``. A checkpoint is written atomically after every epoch with the model,
optimizer, scheduler, epoch, step, RNG states, history and lambdas; rerunning the same
command resumes after the last complete epoch and ends with the same metrics as a run
that was never interrupted. A finished run is not retrained; if the process died between
its checkpoint and its ``metrics.json``, the rerun rewrites ``metrics.json`` from the
checkpoint (the checkpoint is written first and is the truth). Resuming with another
world size or device type is refused unless ``allow_resume_change``. What "the same
metrics" means: on the CPU, bit for bit (tests/tools/bitcheck.py; tests resume mid-run and
compare). On CUDA, ``cudnn.benchmark`` picks convolution algorithms per shape and
process, and bf16 autocast and atomics in some backward kernels sum in varying order, so
a resumed or repeated CUDA run agrees within float tolerance (last digits of the weights,
accuracy within a test image or two), not bit for bit; deterministic algorithms are not
requested, as MixOE does not. DDP ranks reseed with ``runtime.rank_seed`` (rank 0 keeps
the seed: a single process is unchanged), so their noise and augmentations differ.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .config import RUNTIME_FIELDS, RunConfig
from .data import build_splits, get_preset
from .data.deviceaug import augment_batch
from .data.finegrained import IMAGENET_MEAN, IMAGENET_STD
from .data.webvision import listing_digest
from .errors import TrainingError, UserError
from .extract import predict_all
from .io import atomic_write_json, check_can_create, dict_hash, file_sha256, read_json
from .methods import ID_ONLY, METHODS, draw_mix, objective
from .metrics import accuracy, metrics_row
from .models import (arch_spec, build_model, check_arch, load_checkpoint,
                     model_from_checkpoint, save_checkpoint)
from .runtime import (dist_info, epoch_seed, init_distributed, rank_seed, resolve_device,
                      rng_state, seed_everything, set_rng_state, sync_from_rank0)
from .streams import stream_loader
from .weights import load_initial_weights, weights_identity, weights_record

CKPT, METRICS = "checkpoint.pt", "metrics.json"
#: steps between two device-to-host reads: the non-finite check and the progress postfix
CHECK_EVERY = 50


@dataclass
class Run:
    """Everything one training run holds while it runs."""
    cfg: RunConfig
    out_dir: Path
    device: torch.device
    rank: int
    world: int
    ddp: bool
    splits: object
    model: torch.nn.Module          # the bare network (what is saved and evaluated)
    net: torch.nn.Module            # what the step calls: DDP and/or torch.compile wrapped
    opt: torch.optim.Optimizer
    sched: object
    id_loader: object
    aux_loader: object | None
    steps_per_epoch: int
    image_hw: tuple                 # the training crop (CutMix boxes)
    run_hash: str
    base: dict                      # what every checkpoint carries besides the state
    curves: object = None           # TensorBoard writer of rank 0 (tensorboard/ beside metrics.json)


def train(cfg: RunConfig, out_dir, overwrite: bool = False, progress: bool = True,
          allow_resume_change: bool = False, on_epoch=None) -> dict:
    """Train ``cfg`` into ``out_dir`` (resuming if a checkpoint of the same run is there).
    ``on_epoch(record, epochs)`` is called on rank 0 after each epoch (progress reports)."""
    cfg = cfg.resolved()
    out_dir = Path(out_dir)
    if cfg.init is not None:
        check_init(cfg.init)
    device = resolve_device(cfg.device)
    ddp = init_distributed(device)
    rank, world = dist_info()
    if rank == 0:
        check_can_create(out_dir)    # a bad --out fails now, not after the first epoch
    identity = run_identity(cfg)
    run_hash = dict_hash(identity)
    resume = _existing_run(out_dir / CKPT, cfg, run_hash, overwrite)
    if resume is not None and resume.get("finished"):
        return _result_of_finished(resume, out_dir, rank)
    if resume is not None:
        _check_runtime(resume, world, device, out_dir, allow_resume_change)
    run = _setup(cfg, out_dir, device, ddp, rank, world, identity, run_hash)
    state = _initial_state(run, resume)
    run.curves = curves_writer(out_dir, state["step"]) if rank == 0 else None
    for epoch in range(state["epoch"], cfg.epochs):
        t0 = time.time()
        sums = _train_epoch(run, state, epoch, progress)
        t1 = time.time()
        record = {"epoch": epoch + 1, "lr": run.sched.get_last_lr()[0],
                  **{f"train_{k}": v / max(run.steps_per_epoch, 1) for k, v in sums.items()},
                  **epoch_metrics(run, epoch)}
        t2 = time.time()
        record.update(seconds=round(t2 - t0, 3), train_seconds=round(t1 - t0, 3),
                      eval_seconds=round(t2 - t1, 3))
        _end_epoch(run, state, record)
        if on_epoch is not None and rank == 0:
            on_epoch(record, cfg.epochs)
    if run.curves is not None:
        run.curves.close()
    if ddp:
        dist.destroy_process_group()
    return load_checkpoint(out_dir / CKPT)["final"] if rank == 0 else {}


def read_metrics(run_dir) -> dict | None:
    """A run folder's metrics.json, None when there is none or it is unreadable."""
    try:
        return read_json(Path(run_dir) / METRICS)
    except (OSError, ValueError):
        return None


def expected_run_hash(cfg: RunConfig) -> str | None:
    """The ``run_hash`` train() gives ``cfg`` (run_identity of the resolved config); None
    while ``cfg.init`` is missing (a cell's pretraining has not run)."""
    r = cfg.resolved()
    if r.init and not Path(r.init).is_file():
        return None
    return dict_hash(run_identity(r))


def finished(run_dir, cfg: RunConfig | None = None) -> bool:
    """The one check that a run folder holds a finished run (metrics.json says so); with
    ``cfg``, the finished run of exactly that config (train() would return at once)."""
    m = read_metrics(run_dir)
    if not (isinstance(m, dict) and m.get("finished")):
        return False
    return cfg is None or m.get("run_hash") == expected_run_hash(cfg)


def check_init(init) -> None:
    """The checkpoint to fine-tune from is a file (one line naming it and the fix if not)."""
    path = Path(init)
    if path.is_dir():
        inside = path / CKPT
        fix = f"--init {inside}" if inside.is_file() else "the checkpoint.pt inside a run folder"
        raise UserError(f"--init {init} is a folder, not a checkpoint; pass {fix}")
    if not path.is_file():
        raise UserError(f"--init {init}: no such checkpoint; pass the checkpoint.pt of a "
                        "`lmoe-viz pretrain` run")


def run_identity(cfg: RunConfig) -> dict:
    """What names the run: the config's identity plus the content of what it starts from
    (the initial checkpoint's or weights' hash) and, when ``aux_root`` is given, of the
    outlier pool (its listing's hash, webvision.listing_digest: the same images under
    another path give the same name; the default DATA_ROOT/webvision adds nothing, so
    names of runs made before stay)."""
    out = {**cfg.identity(), "init_sha256": file_sha256(cfg.init) if cfg.init else None,
           "weights": weights_identity(cfg.weights) if not cfg.init else None}
    if cfg.aux_root and cfg.method not in ID_ONLY:
        out["aux_listing"] = listing_digest(cfg.aux_root, cfg.aux_exclude)
    return out


# ---------------------------------------------------------------------------- set-up

def _setup(cfg, out_dir, device, ddp, rank, world, identity, run_hash) -> Run:
    splits = build_splits(cfg)
    if cfg.select == "best-val" and (splits.id_val is None or len(splits.id_val) == 0):
        raise UserError(f"--select best-val needs validation images of the ID classes and preset "
                        f"{cfg.preset} has none (val.txt); pass --select last or fix val.txt")
    model, spec, weights = _initial_model(cfg, splits, device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True,
                          weight_decay=cfg.weight_decay, fused=True if device.type == "cuda" else None)
    id_loader, aux_loader = _loaders(cfg, splits, device, rank, world)
    steps = len(id_loader) if cfg.limit_batches is None else min(len(id_loader), cfg.limit_batches)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_lambda(steps * cfg.epochs, cfg.lr))
    net = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None) if ddp else model
    if cfg.compile:
        net = torch.compile(net)
    base = {"config": cfg.to_dict(), "run_hash": run_hash, "seed": cfg.seed, "split": cfg.split,
            "arch": spec, "id_classes": splits.id_classes, "ood_classes": splits.ood_classes,
            "init_sha256": identity["init_sha256"], "weights": weights,
            "runtime": {"world_size": world, "device": device.type}}
    first = splits.id_train[0][0]                          # before any epoch reseeds the RNGs
    image_hw = (int(first["size"]),) * 2 if isinstance(first, dict) else tuple(first.shape[-2:])
    return Run(cfg, out_dir, device, rank, world, ddp, splits, model, net, opt, sched,
               id_loader, aux_loader, steps, image_hw, run_hash, base)


def _initial_model(cfg, splits, device):
    """The network to train: the ``init`` checkpoint's, or a fresh one with the initial
    weights (ImageNet for the paper presets), on ``device``."""
    preset = get_preset(cfg.preset)
    spec = arch_spec(preset.arch, splits.num_classes, preset.channels, cfg.input_size)
    if cfg.init:
        init_ckpt = load_checkpoint(cfg.init)
        check_arch(init_ckpt, spec, cfg.init)
        model = model_from_checkpoint(init_ckpt)
        weights = init_ckpt.get("weights", {"name": "unknown", "file": None, "sha256": None})
    else:
        if cfg.method != "baseline":
            raise UserError(f"fine-tuning with method {cfg.method!r} needs --init CKPT "
                            "(a checkpoint from `lmoe-viz pretrain`)")
        seed_everything(cfg.seed)
        model = build_model(preset.arch, splits.num_classes, preset.channels)
        weights = weights_record(cfg.weights)      # fetches ImageNet's file if not cached
        load_initial_weights(model, weights)
    model.to(device)
    if _channels_last(cfg, device):
        model = model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return model, spec, weights


def _loaders(cfg, splits, device, rank, world):
    """The ID stream (one pass an epoch) and, when fine-tuning, the endless outlier stream:
    ``aux_ratio`` x the ID batch (MixOE's OE: 2), whole batches (streams.py)."""
    pin = device.type == "cuda"
    n_id = len(splits.id_train)
    id_loader = stream_loader(splits.id_train, cfg.batch_size, cfg.seed, rank, world,
                              cfg.num_workers, pin, stream=0,
                              drop_last=n_id // world > cfg.batch_size)
    if not METHODS[cfg.method].outliers:
        return id_loader, None
    batch = cfg.batch_size * cfg.aux_ratio
    if len(splits.aux) < batch * world:
        raise UserError(f"the outlier set holds {len(splits.aux)} images, fewer than one outlier "
                        f"batch ({cfg.batch_size} x aux_ratio {cfg.aux_ratio} x {world} process(es)); "
                        "lower --batch-size or --aux-ratio, or add outliers")
    aux_loader = stream_loader(splits.aux, batch, cfg.seed + 1, rank, world, cfg.num_workers, pin,
                               stream=1, endless=True)
    return id_loader, aux_loader


def cosine_lambda(total_steps: int, lr: float = 1.0, eta_min: float = 1e-6):
    """Per-step cosine annealing of the LR factor from 1 down to eta_min / lr (MixOE's
    schedule: the LR reaches 1e-6 at the last step)."""
    floor = min(eta_min / lr, 1.0) if lr > 0 else 0.0
    return lambda step: floor + (1 - floor) * 0.5 * (
        1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))


def _initial_state(run: Run, resume) -> dict:
    state = {"epoch": 0, "step": 0, "history": [], "lambdas": [], "best": None}
    if resume is None:
        return state
    run.model.load_state_dict(resume["model"])
    run.opt.load_state_dict(resume["optimizer"])
    _buffers_like_params(run.opt)
    run.sched.load_state_dict(resume["scheduler"])
    set_rng_state(resume["rng"])
    return {k: resume.get(k) for k in state}


def _buffers_like_params(opt) -> None:
    """Give every loaded optimizer buffer its parameter's memory layout: a checkpoint
    written on the CPU holds contiguous buffers, and CUDA's fused SGD refuses a
    channels_last parameter with a buffer of other strides (values unchanged)."""
    for group in opt.param_groups:
        for p in group["params"]:
            for k, v in opt.state.get(p, {}).items():
                if isinstance(v, torch.Tensor) and v.shape == p.shape and v.stride() != p.stride():
                    opt.state[p][k] = torch.empty_like(p).copy_(v)


# ---------------------------------------------------------------------------- one epoch

class NonFiniteWatch:
    """The first step whose loss is not finite, kept on the device (no sync per step)."""

    def __init__(self, device):
        self.first = torch.tensor([math.inf, 0.0], dtype=torch.float64, device=device)

    def update(self, loss: torch.Tensor, step: int) -> None:
        loss = loss.detach().double()
        new = torch.stack([torch.full_like(loss, step), loss])
        bad = ~torch.isfinite(loss) & torch.isinf(self.first[0])
        self.first = torch.where(bad, new, self.first)

    def check(self, epoch: int, out_dir) -> None:
        """Raise on every rank alike if any rank saw a non-finite loss."""
        first = self.first
        if dist.is_available() and dist.is_initialized():
            parts = [torch.empty_like(first) for _ in range(dist.get_world_size())]
            dist.all_gather(parts, first)
            first = min(parts, key=lambda t: float(t[0]))
        step, value = first.tolist()
        if math.isfinite(step):
            raise TrainingError(
                f"non-finite loss ({value}) at epoch {epoch + 1}, step {int(step)}; "
                f"the last good checkpoint in {out_dir} is kept: lower --lr or check the data")


def _train_epoch(run: Run, state: dict, epoch: int, progress: bool) -> dict:
    """One pass over the ID stream; the mean of each loss term (floats)."""
    cfg, device = run.cfg, run.device
    seed_everything(rank_seed(epoch_seed(cfg.seed, epoch), run.rank))
    run.id_loader.sampler.set_epoch(epoch)
    aux_iter = None
    if run.aux_loader is not None:
        run.aux_loader.sampler.set_epoch(epoch)
        aux_iter = iter(run.aux_loader)
    mix_rng = np.random.default_rng([cfg.seed, epoch, 12345])
    h, w = run.image_hw
    sums: dict = {}
    lams: list = []
    watch = NonFiniteWatch(device)
    cl = _channels_last(cfg, device)
    run.net.train()
    bar = _bar(progress and run.rank == 0, run.steps_per_epoch,
               f"{cfg.method} epoch {epoch + 1}/{cfg.epochs}")
    for i, (x, y, _) in enumerate(run.id_loader):
        if i >= run.steps_per_epoch:
            break
        x, y = _to(x, device, cl), y.to(device, non_blocking=True)
        x_out, lam, box = None, 1.0, None
        if aux_iter is not None:
            x_out = _to(next(aux_iter)[0], device, cl)
            if METHODS[cfg.method].mixes:
                lam, box = draw_mix(mix_rng, cfg.alpha, cfg.mix_op, h, w)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss, terms = objective(run.net, cfg, run.splits.num_classes, x, y, x_out, lam, box)
        state["step"] += 1
        watch.update(loss, state["step"])
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        run.sched.step()
        if "lam" in terms:
            lams.append(terms.pop("lam"))
        for k, v in {"loss": loss.detach(), **terms}.items():
            sums[k] = sums[k] + v.float() if k in sums else v.float()
        if (i + 1) % CHECK_EVERY == 0:
            watch.check(epoch, run.out_dir)
            running = float(sums["loss"]) / (i + 1)
            if bar is not None:
                bar.set_postfix(loss=f"{running:.3f}")
            if run.curves is not None:
                run.curves.add_scalar("train/loss_running", running, state["step"])
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    watch.check(epoch, run.out_dir)
    state["lambdas"].extend(lams)
    out = dict(zip(sums, torch.stack(list(sums.values())).tolist())) if sums else {}
    if lams:
        out["lam"] = float(sum(lams))
    return out


def _channels_last(cfg, device) -> bool:
    """channels_last on CUDA always, on the CPU with ``cfg.channels_last`` (1.3x faster steps
    of the small network on one thread, measured on an Intel Xeon with AVX-512)."""
    return device.type == "cuda" or bool(cfg.channels_last)


def _to(x, device, channels_last: bool):
    """A batch on ``device``; a ``--augment device`` batch (uint8 images and their
    parameters, data/deviceaug.py) is augmented there."""
    if isinstance(x, dict):
        x = augment_batch(x["img"].to(device, non_blocking=True),
                          x["params"].to(device, non_blocking=True), int(x["size"][0]),
                          IMAGENET_MEAN, IMAGENET_STD)
    else:
        x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _bar(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, leave=False)


# ---------------------------------------------------------------------------- evaluation

def test_metrics(model, splits, device, score: str = "msp", num_workers: int = 0) -> dict:
    """The in-memory model's metrics row (metrics.metrics_row) on ID test vs OOD test: the
    ``holdout`` protocol, convention ``ours`` (a checkpoint under any protocol:
    evaluation.evaluate_checkpoint). Sharded across DDP ranks (extract.predict_all);
    every rank gets the result."""
    idt = predict_all(model, splits.id_test, device, num_workers)
    ood = predict_all(model, splits.ood_test, device, num_workers)
    return {**metrics_row(idt, ood, score, "ours"), "protocol": "holdout"}


def epoch_metrics(run: Run, epoch: int) -> dict:
    """What epoch ``epoch`` (0-based) records: validation accuracy when it selects the model
    (``best-val``), the test metrics every ``eval_every`` epochs; nothing otherwise (the
    test sets are evaluated once, on the selected model, at the end)."""
    cfg, out = run.cfg, {}
    sync_from_rank0(run.model)      # every shard evaluated with the model rank 0 saves
    if cfg.select == "best-val":
        v = predict_all(run.model, run.splits.id_val, run.device, cfg.num_workers)
        out["val_accuracy"] = accuracy(v["logits"], v["labels"])
    if cfg.eval_every and (epoch + 1) % cfg.eval_every == 0:
        out.update(test_metrics(run.model, run.splits, run.device, num_workers=cfg.num_workers))
    return out


def _track_best(state: dict, record: dict, model, select: str) -> None:
    """MixOE's model selection: keep the weights of the epoch with the best validation
    top-1 accuracy (strictly better: the earliest of equal epochs is kept)."""
    if select != "best-val":
        return
    best = state["best"]
    if best is None or record["val_accuracy"] > best["val_accuracy"]:
        state["best"] = {"epoch": record["epoch"], "val_accuracy": record["val_accuracy"],
                         "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}


def _final_metrics(run: Run, state: dict) -> dict:
    """The selected model's test metrics (MixOE: best-val epoch; else the last)."""
    cfg = run.cfg
    if cfg.select == "best-val":
        run.model.load_state_dict(state["best"]["model"])
        selected = state["best"]["epoch"]
    else:
        selected = state["epoch"]
    metrics = test_metrics(run.model, run.splits, run.device, num_workers=cfg.num_workers)
    if run.splits.id_val is not None and "val_accuracy" in state["history"][selected - 1]:
        metrics["val_accuracy"] = state["history"][selected - 1]["val_accuracy"]
    return {**metrics, "epoch": state["epoch"], "select": cfg.select, "selected_epoch": selected,
            "run_hash": run.run_hash, "config": cfg.to_dict(), "world_size": run.world,
            "steps": state["step"], "weights": run.base["weights"], **run.splits.describe()}


# ---------------------------------------------------------------------------- checkpoints

def curves_writer(out_dir: Path, step: int):
    """TensorBoard event files in ``out_dir/tensorboard`` (MixOE's code logs its curves
    with a SummaryWriter too). A resumed run purges events past its checkpoint's step, so
    the curves of a killed epoch do not show twice (the checkpoint's own epoch, logged at its
    last step, stays). None when tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out_dir / "tensorboard"), purge_step=step + 1 if step else None)


def _curve_tag(key: str, final: bool = False) -> str:
    if final:
        return f"final/{key}"
    if key.endswith("seconds"):
        return f"time/{key}"
    if key == "lr" or key.startswith("train_"):
        return f"train/{key.removeprefix('train_')}"
    return f"val/{key.removeprefix('val_')}" if key.startswith("val_") else f"test/{key}"


def _log_curves(run: Run, step: int, record: dict, final: bool = False) -> None:
    """Every number of an epoch's record (train/*, val/*, test/*, time/*), or of the final
    metrics of the selected model (final/*), at the run's step."""
    if run.curves is None:
        return
    for key, value in record.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in (
                "epoch", "steps", "world_size", "selected_epoch") and not key.startswith(("id_", "ood_", "num_", "aux")):
            run.curves.add_scalar(_curve_tag(key, final), value, step)
    run.curves.flush()


def _end_epoch(run: Run, state: dict, record: dict) -> None:
    """Select, evaluate at the end, then write the checkpoint and (after it) metrics.json."""
    _log_curves(run, state["step"], record)
    state["epoch"] = record["epoch"]
    state["history"].append(record)
    _track_best(state, record, run.model, run.cfg.select)
    finished = state["epoch"] == run.cfg.epochs
    final = _final_metrics(run, state) if finished else None
    if final is not None:
        _log_curves(run, state["step"], final, final=True)
    if run.rank == 0:
        save_checkpoint(run.out_dir / CKPT, {
            **run.base, **_saved_state(state, finished), "model": run.model.state_dict(),
            "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(),
            "rng": rng_state(), "finished": finished, "final": final})
        atomic_write_json(run.out_dir / METRICS, metrics_document(
            final or _partial(record, run.cfg, run.run_hash), state, finished))
    if run.ddp:
        dist.barrier()


def metrics_document(head: dict, state: dict, finished: bool) -> dict:
    """metrics.json: the final (or latest) metrics, the history, the lambdas drawn."""
    return {**head, "history": state["history"], "lambdas": state["lambdas"], "finished": finished}


def _saved_state(state: dict, finished: bool) -> dict:
    """The resumable state; a finished run no longer carries the best-epoch copy."""
    out = dict(state)
    if finished and out["best"] is not None:
        out["best"] = {k: v for k, v in out["best"].items() if k != "model"}
    return out


def _partial(record: dict, cfg, run_hash: str) -> dict:
    return {**{k: v for k, v in record.items() if k not in ("seconds", "lr")},
            "run_hash": run_hash, "config": cfg.to_dict()}


def _result_of_finished(ckpt: dict, out_dir: Path, rank: int) -> dict:
    """A finished run's final metrics; ``metrics.json`` rewritten from the checkpoint if a
    kill came between the two writes (or the file was lost)."""
    path = out_dir / METRICS
    try:
        current = read_json(path)
        agrees = current.get("finished") and current.get("run_hash") == ckpt["run_hash"]
    except (OSError, ValueError, AttributeError):
        agrees = False
    if not agrees and rank == 0:
        atomic_write_json(path, metrics_document(ckpt["final"], ckpt, True))
    return ckpt["final"]


def _existing_run(ckpt_path: Path, cfg: RunConfig, run_hash: str, overwrite: bool):
    """The checkpoint to resume from, None to start afresh; refuse another run's folder."""
    if not ckpt_path.exists() or overwrite:
        return None
    ckpt = load_checkpoint(ckpt_path)
    if ckpt.get("run_hash") != run_hash:
        raise UserError(f"{ckpt_path.parent} holds a run of a different config "
                        f"({_config_difference(ckpt.get('config') or {}, cfg.to_dict())}); "
                        "choose another --out or pass --overwrite")
    return ckpt


def _config_difference(there: dict, here: dict) -> str:
    diff = [f"{k} {there.get(k)!r} there, {here.get(k)!r} here" for k in sorted(here)
            if there.get(k) != here.get(k) and k not in RUNTIME_FIELDS]
    return "; ".join(diff[:3]) if diff else "its initial weights differ"


def _check_runtime(ckpt: dict, world: int, device, out_dir, allow: bool) -> None:
    """Refuse to resume on another world size or device type (the per-rank batch, the
    shards and bf16 autocast would change mid-run), unless ``allow``."""
    then = ckpt.get("runtime") or {}
    now = {"world_size": world, "device": device.type}
    changed = [k for k in now if k in then and then[k] != now[k]]
    if changed and not allow:
        raise UserError(f"{out_dir} was trained with " + ", ".join(f"{k} {then[k]}" for k in changed)
                        + "; this run has " + ", ".join(f"{k} {now[k]}" for k in changed)
                        + ": resume it as it began or pass --allow-resume-change")
