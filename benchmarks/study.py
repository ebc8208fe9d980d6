"""Runs per hour of the claims study on this machine (lmoe_viz/study.py).

For each core run of a study unit (CE fine-tune, OE, MixOE and Logit MixOE without / with
L_LC at alpha 1: the runs of claims 1, 2, 4), two short fine-tunes of ``short`` and
``long`` steps on one thread give the time per step (their difference) and the fixed cost
(set-up, evaluation); a full run is the fixed cost plus the preset's steps per epoch times
its fine-tuning epochs. Runs per hour = 3600 / the mean full run, times ``jobs`` processes
(the study's ``--jobs 2`` on 2 cores: one thread each; this assumes they do not slow each
other, so it is an upper bound). Measured with and without ``channels_last`` (the study's
setting), from a pretrained model of a short pretraining (a step costs the same whatever
the weights). Fashion-MNIST when its files are found, else digits.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from .report import Figure, Piece

CORE = (("ce", False), ("oe", False), ("mixoe", False), ("mixoe", True), ("logit_mixoe", False),
        ("logit_mixoe", True))


def _seconds(cfg, out) -> float:
    from lmoe_viz.train import train
    t0 = time.perf_counter()
    train(cfg, out, overwrite=True, progress=False)
    return time.perf_counter() - t0


def study_piece(preset: str | None = None, short: int = 5, long: int = 20, jobs: int = 2,
                workdir=None) -> Piece:
    import torch

    from lmoe_viz.config import RunConfig
    from lmoe_viz.data import build_splits, fashion
    preset = preset or ("fashion-mnist" if fashion.locate(None) else "digits")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    details, figures = {}, []
    try:
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            pre = Path(tmp) / "pre"
            _seconds(RunConfig(preset=preset, epochs=1, limit_batches=2, device="cpu"), pre)
            base = RunConfig(preset=preset, method="ce", device="cpu", outliers="matched",
                             bn="id-stats", init=str(pre / "checkpoint.pt")).resolved()
            steps = len(build_splits(base).id_train) // base.batch_size * base.epochs
            for cl in (False, True):
                full = {}
                for method, lc in CORE:
                    cfg = dict(preset=preset, method=method, lc=lc, epochs=1, device="cpu",
                               outliers="matched", bn="id-stats", channels_last=cl,
                               init=str(pre / "checkpoint.pt"))
                    a = _seconds(RunConfig(**cfg, limit_batches=short), Path(tmp) / "a")
                    b = _seconds(RunConfig(**cfg, limit_batches=long), Path(tmp) / "b")
                    per_step = max(0.0, (b - a) / (long - short))
                    fixed = max(0.0, a - short * per_step)
                    full[f"{method}{'+lc' if lc else ''}"] = {"per_step": per_step, "fixed": fixed,
                                                            "full_run": fixed + steps * per_step}
                mean = sum(v["full_run"] for v in full.values()) / len(full)
                tag = "channels_last" if cl else "contiguous"
                details[tag] = full
                figures.append(Figure(
                    f"{preset} study core runs / hour ({tag})", jobs * 3600 / mean, "runs/h",
                    f"{jobs} one-thread processes, no slow-down between them assumed; the mean "
                    f"of the 6 core runs, each {steps} steps (fixed cost + steps x step time "
                    f"from {short}- and {long}-step runs)", sense=">="))
            ratio = figures[1].value / figures[0].value if figures[0].value else None
            figures.append(Figure(f"{preset} study: channels_last / contiguous runs per hour",
                                  ratio, "x", "the two figures above", sense=">="))
    finally:
        torch.set_num_threads(threads)
    return Piece("study", figures, {"preset": preset, "short": short, "long": long, "jobs": jobs},
                 details)
