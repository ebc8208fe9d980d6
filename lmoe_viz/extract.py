"""Logit extraction and the logit cache.

``extract(checkpoint, ...)`` returns, for each requested part (``id_test``, ``ood_test``,
``id_val``, ``aux`` or a protocol's part, data/protocols.py), the logits, penultimate features, labels (-1 for OOD) and sample ids.
Results are cached as ``<cache_dir>/<key>.npz`` plus ``<key>.json`` metadata, written
atomically; the key hashes the checkpoint's content (sha256), the preset, the split and
the parts, so a changed checkpoint is recomputed and an unchanged one is reused.
"""
from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from .batchnorm import recalibrate
from .config import RunConfig
from .data import build_splits
from .data.protocols import inputs_digest, part_dataset
from .io import atomic_save, atomic_write_json, dict_hash, file_sha256, read_json
from .models import load_checkpoint, model_from_checkpoint
from .runtime import as_device, dist_info
from .sampling import SAMPLE_SEED, sample_rows



@torch.no_grad()
def predict(model, dataset, device="cpu", batch_size: int = 256, num_workers: int = 0,
            limit: int | None = None, sample_seed: int = SAMPLE_SEED) -> dict:
    """Logits, features, labels and ids of ``dataset`` (eval mode, bf16 autocast on CUDA).

    ``limit``: a seeded uniform sample of that many items (sampling.py), in dataset order,
    not the first items."""
    if limit is not None and limit < len(dataset):
        dataset = Subset(dataset, sample_rows(len(dataset), limit, sample_seed).tolist())
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    out = {"logits": [], "features": [], "labels": [], "ids": []}
    for x, y, idx in loader:
        x = x.to(device, non_blocking=True)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits, feat = model(x, return_features=True)
        out["logits"].append(logits.float().cpu())
        out["features"].append(feat.float().cpu())
        out["labels"].append(torch.as_tensor(y))
        out["ids"].append(torch.as_tensor(idx))
    model.train(was_training)
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def predict_all(model, dataset, device="cpu", num_workers: int = 0) -> dict:
    """``predict`` over the whole dataset. Under DDP each rank takes every world-th item
    and the parts are gathered in order, so every rank gets the full result and no rank
    waits the length of a test set at a barrier."""
    rank, world = dist_info()
    if world == 1:
        return predict(model, dataset, device, num_workers=num_workers)
    import torch.distributed as dist
    part = predict(model, Subset(dataset, range(rank, len(dataset), world)), device,
                   num_workers=num_workers)
    parts: list = [None] * world
    dist.all_gather_object(parts, part)
    out = {}
    for k in part:
        full = np.empty((len(dataset),) + parts[0][k].shape[1:], dtype=parts[0][k].dtype)
        for r, p in enumerate(parts):
            full[r::world] = p[k]
        out[k] = full
    return out


def cache_key(ckpt_sha: str, preset: str, split: int, parts, data_root=None, inputs=None,
              recalibrate_bn: bool = False, aux_limit: int | None = None) -> str:
    """The cache entry of one extraction: the checkpoint's content, what was extracted,
    ``inputs`` (the content hash of the info files the parts read, data/protocols.py),
    whether BatchNorm was recalibrated first, and the outlier sample (its size and seed)
    when ``aux`` is among the parts."""
    key = {"ckpt": ckpt_sha, "preset": preset, "split": split, "parts": sorted(parts),
           "data_root": str(data_root or ""), "inputs": inputs}
    if recalibrate_bn:
        key["recalibrate_bn"] = True
    if "aux" in parts:
        key["aux_sample"] = [aux_limit, SAMPLE_SEED]
    return dict_hash(key)


def extract(checkpoint, cache_dir=None, parts=("id_test", "ood_test"), data_root=None,
            device="cpu", aux_limit: int = 2000, refresh: bool = False, aux_root=None,
            with_meta: bool = False, recalibrate_bn: bool = False, splits=None, loaded=None):
    """``{part: {logits, features, labels, ids}}`` for a checkpoint, cached on disk.

    ``cache_dir`` defaults to ``<checkpoint folder>/logits``. ``aux`` is capped at
    ``aux_limit`` samples (the outlier set can be millions of images). ``with_meta``
    returns ``(result, meta)``, meta being the checkpoint's config and initial weights.
    ``recalibrate_bn`` recomputes BatchNorm's running statistics on the ID training images
    before extracting (batchnorm.recalibrate; cached under its own key). ``splits``: the
    run's data, or a function that builds it on a cache miss (callers extracting many
    runs of one preset and split build it once). ``loaded``: ``checkpoint`` already loaded
    (models.load_checkpoint; the CLI checks it first), so it is read once.
    """
    device = as_device(device)
    checkpoint = Path(checkpoint)
    ckpt = loaded if loaded is not None else load_checkpoint(checkpoint)
    cfg = RunConfig.from_dict(ckpt["config"])
    if data_root is not None:
        cfg.data_root = str(data_root)
    if aux_root is not None:
        cfg.aux_root = str(aux_root)
    sha = file_sha256(checkpoint)
    meta_out = {"config": ckpt["config"], "weights": ckpt.get("weights")}
    cache_dir = Path(cache_dir) if cache_dir else checkpoint.parent / "logits"
    key = cache_key(sha, cfg.preset, cfg.split, parts, cfg.data_root,
                    inputs_digest(cfg, parts), recalibrate_bn, aux_limit)
    npz, meta_path = cache_dir / f"{key}.npz", cache_dir / f"{key}.json"
    result = None if refresh else _read_cache(npz, meta_path, sha)
    if result is not None:
        return (result, meta_out) if with_meta else result
    if splits is None:
        splits = build_splits(cfg)
    elif callable(splits):
        splits = splits()
    datasets = {p: part_dataset(p, splits, cfg) for p in parts}
    model = model_from_checkpoint(ckpt).to(device)
    if recalibrate_bn:
        recalibrate(model, splits.id_train, device, batch_size=cfg.batch_size or 128,
                    seed=cfg.seed)
    result = {p: predict(model, datasets[p], device, limit=aux_limit if p == "aux" else None)
              for p in parts}
    _write_cache(npz, meta_path, result, {
        "checkpoint": str(checkpoint), "checkpoint_sha256": sha, "config": ckpt["config"],
        "parts": list(parts), "id_classes": ckpt.get("id_classes"),
        "ood_classes": ckpt.get("ood_classes"), "weights": ckpt.get("weights"),
        "recalibrate_bn": bool(recalibrate_bn),
        "sizes": {p: len(d["labels"]) for p, d in result.items()}})
    return (result, meta_out) if with_meta else result


def _read_cache(npz: Path, meta_path: Path, sha: str) -> dict | None:
    """A cached extraction of the checkpoint of ``sha``; None when absent or unreadable
    (a warning says so, and the caller recomputes it)."""
    if not (npz.is_file() and meta_path.is_file()):
        return None
    try:
        if read_json(meta_path).get("checkpoint_sha256") != sha:
            return None
        with np.load(npz) as data:
            return _unflatten(dict(data))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        warnings.warn(f"logit cache {npz} is unreadable ({type(exc).__name__}); "
                      "recomputing it", stacklevel=3)
        return None


def _write_cache(npz: Path, meta_path: Path, result: dict, meta: dict) -> None:
    flat = {f"{p}/{k}": v for p, d in result.items() for k, v in d.items()}
    atomic_save(npz, lambda buf: np.savez(buf, **flat))
    atomic_write_json(meta_path, meta)


def _unflatten(flat: dict) -> dict:
    out: dict = {}
    for key, v in flat.items():
        part, name = key.split("/", 1)
        out.setdefault(part, {})[name] = v
    return out
