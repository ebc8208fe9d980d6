"""Step cost of each method against CE and its ideal pass count (target <= 1.10x).

A method that forwards k batches of the ID batch's size a step (OE: ID + outliers;
MixOE and Logit MixOE: ID + outliers or x~, plus one more with L_LC) ideally costs k CE
steps. The figure is ``(method step / CE step) / k``: 1.00 means no overhead beyond its
forwards. Steps are full training steps (``lmoe_viz.methods.objective`` with a lambda
from ``draw_mix``, backward, SGD Nesterov step), on one small ResNet per method built as
the presets build theirs, each method with its default (reference) BatchNorm regime:
OE and Logit MixOE concatenate their inputs into one forward (``joint``), MixOE runs one
forward per batch (``separate``).
"""
from __future__ import annotations

import numpy as np
import torch

from .report import Figure, Piece
from .timing import interleaved, medians, spread, torch_threads, worst

#: (method, lc) measured against CE, in the issue's order
METHODS = (("oe", False), ("mixoe", False), ("mixoe", True), ("logit_mixoe", False),
           ("logit_mixoe", True))
NAMES = {"baseline": "CE", "oe": "OE", "energy_oe": "Energy-OE", "mixoe": "MixOE",
         "logit_mixoe": "Logit MixOE"}


def label(method: str, lc: bool) -> str:
    return NAMES[method] + (" w/ L_LC" if lc else "")


def run_config(preset: str, method: str, lc: bool, oe_aux_ratio: int):
    """The resolved RunConfig of one method (preset defaults, reference BatchNorm)."""
    from lmoe_viz.config import RunConfig
    aux = oe_aux_ratio if method in ("oe", "energy_oe") else None
    return RunConfig(preset=preset, method=method, lc=lc, aux_ratio=aux).resolved()


def ideal_passes(cfg) -> int:
    """Rows forwarded a step / ID batch, for the methods' default forms (mixing at the
    input or at ``fc``, one forward per input): CE 1, OE 1 + aux_ratio, MixOE and Logit
    MixOE 2, plus 1 with L_LC (x~ of MixOE w/ L_LC is shared; f(x_out) is the extra)."""
    if cfg.method == "baseline":
        return 1
    if cfg.method in ("oe", "energy_oe"):
        return 1 + cfg.aux_ratio
    return 2 + int(cfg.lc)


def make_step(cfg, arch: str, num_classes: int, channels: int, batch: int, size: int,
              device, seed: int = 0, compile_model: bool = False):
    """A closure running one full training step of ``cfg`` on fixed random inputs (new
    lambda each call), as train.py runs it: SGD Nesterov, and on CUDA bf16 autocast,
    channels_last and the fused optimizer; ``compile_model`` wraps the network in
    ``torch.compile`` (train.py's ``--compile``)."""
    from lmoe_viz.methods import draw_mix, objective
    from lmoe_viz.models import build_model
    device = torch.device(device)
    cuda = device.type == "cuda"
    torch.manual_seed(seed)
    fmt = torch.channels_last if cuda else torch.contiguous_format
    model = build_model(arch, num_classes, channels).to(device, memory_format=fmt)
    net = torch.compile(model) if compile_model else model
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True,
                          weight_decay=1e-5, fused=True if cuda else None)
    x = torch.randn(batch, channels, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, num_classes, (batch,), device=device)
    n_out = batch * (cfg.aux_ratio if cfg.method != "baseline" else 0)
    x_out = torch.randn(n_out, channels, size, size, device=device).contiguous(memory_format=fmt)
    rng = np.random.default_rng(seed)
    model.train()

    def step():
        lam, box = (draw_mix(rng, cfg.alpha, cfg.mix_op, size, size)
                    if cfg.method in ("mixoe", "logit_mixoe") else (1.0, None))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss, _ = objective(net, cfg, num_classes, x, y, x_out if n_out else None, lam, box)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    step.model = model
    return step


def cuda_sync(device):
    device = torch.device(device)
    return torch.cuda.synchronize if device.type == "cuda" else None


def step_piece(device="cpu", preset: str = "fashion-mnist", batch: int = 128, size: int = 28,
               rounds: int = 25, warmup: int = 3, oe_aux_ratio: int = 1,
               threads: int | None = 1) -> Piece:
    """Median step time of CE and each method (:data:`METHODS`), interleaved round by
    round; figure per method: (method / CE) / ideal passes. ``threads``: torch threads
    on a CPU (timing.torch_threads; None keeps torch's)."""
    from lmoe_viz.data import get_preset
    p = get_preset(preset)
    variants = [("baseline", False)] + list(METHODS)
    cfgs = {label(m, lc): run_config(preset, m, lc, oe_aux_ratio) for m, lc in variants}
    steps = {k: make_step(c, p.arch, p.num_id, p.channels, batch, size, device)
             for k, c in cfgs.items()}
    cpu = torch.device(device).type == "cpu"
    with torch_threads(threads if cpu else None):
        used = torch.get_num_threads()
        times = interleaved(steps, rounds, warmup, cuda_sync(device))
    med = medians(times)
    ce = med["CE"]
    figures = []
    for m, lc in METHODS:
        k = label(m, lc)
        passes = ideal_passes(cfgs[k])
        figures.append(Figure(
            f"step {k} / CE / {passes} passes", med[k] / ce / passes, "x",
            f"median of {rounds} interleaved full training steps ({cfgs[k].bn} forwards, "
            f"{passes} x {batch} rows) over CE's, per ideal pass; {p.arch} ResNet, "
            f"batch {batch}, {size} px, {device}" + (f", {used} thread(s)" if cpu else ""),
            1.10, "<=",
            noise=worst(spread(times[k]), spread(times["CE"]))))
    details = {k: {"median_ms": 1000 * med[k], "iqr_over_median": spread(times[k]),
                   "ideal_passes": ideal_passes(cfgs[k]), "bn": cfgs[k].bn,
                   "aux_ratio": cfgs[k].aux_ratio} for k in cfgs}
    settings = {"device": str(device), "preset": preset, "arch": p.arch, "batch": batch,
                "size": size, "rounds": rounds, "warmup": warmup, "oe_aux_ratio": oe_aux_ratio,
                "threads": used if cpu else None}
    notes = []
    if torch.device(device).type == "cpu":
        notes.append("the <= 1.10 target is judged on a GPU (benchmarks/gpu.py); on a CPU the "
                     "cost of a row depends on the batch: a concatenated (joint) forward of "
                     "2-3 batches is not 2-3 times one batch's forward")
    if oe_aux_ratio != 2:
        notes.append(f"OE runs with outlier batch {oe_aux_ratio}x ID (ideal "
                     f"{1 + oe_aux_ratio} passes); MixOE's OE default is 2x (3 passes)")
    return Piece("step", figures, settings, details, notes)
