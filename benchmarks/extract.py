"""Extraction throughput against a pure forward on the same data (target >= 0.9x).

``lmoe_viz.extract.predict`` runs a DataLoader over the dataset and keeps logits,
features, labels and ids on the CPU; the bare loop calls ``model(x)`` on slices of the
same tensor in eval mode without gradients. The ratio is the bare loop's time over
predict's time, i.e. predict's images/s over the forward's: 1.00 means the bookkeeping
is free.
"""
from __future__ import annotations

import torch

from .report import Figure, Piece
from .step import cuda_sync
from .timing import interleaved, medians, spread, torch_threads, worst


def extract_piece(device="cpu", arch: str = "small", num_classes: int = 6, channels: int = 1,
                  n: int = 2048, size: int = 28, batch: int = 256, rounds: int = 7,
                  warmup: int = 1, threads: int | None = 1) -> Piece:
    """Median time of ``predict`` and of the bare loop, interleaved; ``threads``: torch
    threads on a CPU (timing.torch_threads; None keeps torch's)."""
    from lmoe_viz.data.tensors import TensorImages
    from lmoe_viz.extract import predict
    from lmoe_viz.models import build_model
    device = torch.device(device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = build_model(arch, num_classes, channels).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    x = torch.randn(n, channels, size, size)
    data = TensorImages(x, torch.zeros(n, dtype=torch.long), torch.arange(n))

    def run_predict():
        predict(model, data, device, batch_size=batch)

    @torch.no_grad()
    def run_forward():
        model.eval()
        for i in range(0, n, batch):
            xb = x[i:i + batch].to(device, non_blocking=True)
            if cuda:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                model(xb)

    with torch_threads(threads if not cuda else None):
        used = torch.get_num_threads()
        times = interleaved({"predict": run_predict, "forward": run_forward}, rounds, warmup,
                            cuda_sync(device))
    med = medians(times)
    fig = Figure("extract predict / bare forward (img/s)", med["forward"] / med["predict"], "x",
                 f"median of {rounds} interleaved passes over the same {n} images "
                 f"({size} px, batch {batch}, {arch} ResNet, {device}"
                 + ("" if cuda else f", {used} thread(s)") + "): "
                 "lmoe_viz.extract.predict vs model(x) in eval/no_grad", 0.9, ">=",
                 noise=worst(*(spread(v) for v in times.values())))
    details = {k: {"median_s": med[k], "images_per_s": n / med[k],
                   "iqr_over_median": spread(times[k])} for k in med}
    settings = {"device": str(device), "arch": arch, "n": n, "size": size, "batch": batch,
                "rounds": rounds, "warmup": warmup, "threads": None if cuda else used}
    return Piece("extract", [fig], settings, details)
