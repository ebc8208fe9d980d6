"""Evaluation cost per epoch against training cost per epoch.

A short ``lmoe_viz.train.train`` run of the ``digits`` preset; each record of its
``metrics.json`` history carries ``train_seconds`` (the epoch's steps) and
``eval_seconds`` (what the epoch evaluates). The figure is the median over epochs of
eval / train. Two runs: the default (test sets evaluated once, at the end, unless the
preset selects on validation) and ``eval_every=1`` (test metrics after every epoch,
for curves), where the config has that field.

Should the history lack those keys (an older train.py), the evaluation is timed here
around ``train.epoch_metrics`` and the training time is the record's ``seconds``.
"""
from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

from .report import Figure, Piece


def _timed_epoch_metrics(train_mod, log: list):
    real = train_mod.epoch_metrics

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            log.append(time.perf_counter() - t0)
    return real, timed


def epoch_times(cfg, out_dir) -> tuple[list, list, str]:
    """Per-epoch (train seconds, eval seconds) of one run, and where they came from."""
    from lmoe_viz import train as train_mod
    log: list = []
    real, timed = _timed_epoch_metrics(train_mod, log) if hasattr(train_mod, "epoch_metrics") \
        else (None, None)
    if real is not None:
        train_mod.epoch_metrics = timed
    try:
        train_mod.train(cfg, out_dir, overwrite=True, progress=False)
    finally:
        if real is not None:
            train_mod.epoch_metrics = real
    history = json.loads((Path(out_dir) / "metrics.json").read_text())["history"]
    if all("train_seconds" in r and "eval_seconds" in r for r in history):
        return ([r["train_seconds"] for r in history], [r["eval_seconds"] for r in history],
                "metrics.json history (train_seconds, eval_seconds)")
    if real is None or len(log) != len(history):
        raise RuntimeError("metrics.json has no train_seconds/eval_seconds and "
                           "lmoe_viz.train.epoch_metrics cannot be timed")
    return ([r["seconds"] for r in history], log,
            "timed here: train = record's seconds, eval = train.epoch_metrics")


def epoch_piece(preset: str = "digits", epochs: int = 3, limit_batches: int | None = None,
                device: str = "cpu", runs=("default", "eval_every=1"), workdir=None) -> Piece:
    """One training run per entry of ``runs`` (``default``, ``eval_every=1``)."""
    from lmoe_viz.config import RunConfig
    base = RunConfig(preset=preset, epochs=epochs, limit_batches=limit_batches, device=device)
    configs = {"default": base}
    if "eval_every" in {f.name for f in dataclasses.fields(RunConfig)}:
        configs["eval_every=1"] = dataclasses.replace(base, eval_every=1)
    runs = {name: configs[name] for name in runs if name in configs}
    figures, details = [], {}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for name, cfg in runs.items():
            tr, ev, source = epoch_times(cfg, Path(tmp) / name.replace("=", ""))
            ratios = [e / t for t, e in zip(tr, ev) if t > 0]
            details[name] = {"train_seconds": tr, "eval_seconds": ev, "source": source}
            steps = f", {limit_batches} steps each" if limit_batches else ""
            figures.append(Figure(
                f"eval / train per epoch ({name})", statistics.median(ratios) if ratios else None,
                "x", f"median over the epochs of a {preset} pretraining run ({cfg.epochs} "
                f"epochs{steps}, {device}); {source}"))
    settings = {"preset": preset, "epochs": epochs, "limit_batches": limit_batches,
                "device": device, "runs": list(runs)}
    return Piece("epoch", figures, settings, details)
