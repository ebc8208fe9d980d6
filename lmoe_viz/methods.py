"""One objective per method behind one interface: ``objective(...) -> (loss, terms)``.

=============  =====================================================  ================
method         loss                                                   PAPER.md
=============  =====================================================  ================
baseline       CE(f(x_in), y)                                         (2)-(3)
oe             CE(f(x_in), y) + beta CE(f(x_out), u)                  (9)
mixoe          CE(f(x_in), y) + beta CE(f(x~), y~)                    (10)-(12)
logit_mixoe    CE(f(x_in), y) + beta CE(z~, y~), z~ mixed at a layer  (13)-(14)
... + lc       + gamma L_LC(f(x~), f(x_in), f(x_out))                 (15)-(16)
=============  =====================================================  ================

x~ is mixup or CutMix of the ID and outlier inputs (with CutMix, lambda is reset to the
ID area kept and that lambda is used for y~, z~ and L_LC). For MixOE w/ L_LC, f(x~) is
shared by both terms. ``mix_layer`` in layer1..layer4 mixes hidden features instead of
logits (the extension after the first author's public follow-up code); ``fc`` is eq. (13).

Forward batching (``batching``), a choice with a BatchNorm consequence:

* ``separate`` (MixOE's code): one forward per batch (ID, mixed, outliers). BatchNorm
  normalises each with its own batch statistics, and its running statistics are updated
  once per forward, so their momentum acts two or three times per step.
* ``joint`` (Logit MixOE's public code): ID, outliers (and mixed inputs) concatenated in
  one forward. BatchNorm statistics are shared by ID and outlier samples in the batch,
  and running statistics are updated once per step.
"""
from __future__ import annotations

import numpy as np
import torch

from . import losses as L


def draw_mix(rng: np.random.Generator, alpha: float, mix_op: str, height: int, width: int):
    """One step's lambda ~ Beta(alpha, alpha), and a CutMix box when ``mix_op='cutmix'``."""
    lam = float(rng.beta(alpha, alpha))
    box = L.cutmix_box(lam, height, width, rng) if mix_op == "cutmix" else None
    return lam, box


def _forward(fn, xs: list, joint: bool) -> list:
    """Apply ``fn`` to each tensor of ``xs``, concatenated in one call or one call each."""
    if not joint:
        return [fn(x) for x in xs]
    out = fn(torch.cat(xs))
    return list(torch.split(out, [len(x) for x in xs]))


def objective(model, cfg, num_classes: int, x_in, y, x_out=None, lam: float = 1.0,
              box=None):
    """The loss of ``cfg.method`` for one step, and the terms to log (floats)."""
    joint = cfg.batching == "joint"
    terms = {}
    if cfg.method == "baseline":
        loss = L.soft_cross_entropy(model(x_in), L.mixoe_targets(y, num_classes, 1.0))
        return loss, {"ce_id": loss.item()}
    n = min(len(x_in), len(x_out))
    xi, xo = x_in[:n], x_out[:n]
    if cfg.method == "oe":
        z_in, z_out = _forward(model, [x_in, x_out], joint)
        ce_id = L.soft_cross_entropy(z_in, L.mixoe_targets(y, num_classes, 1.0))
        ce_out = L.soft_cross_entropy(z_out, L.uniform_targets(len(z_out), num_classes,
                                                               z_out.device))
        return ce_id + cfg.beta * ce_out, {"ce_id": ce_id.item(), "ce_out": ce_out.item()}
    x_mix = None
    if cfg.method == "mixoe" or cfg.lc:
        if cfg.mix_op == "cutmix":
            x_mix, lam = L.cutmix(xi, xo, box)
        else:
            x_mix = L.mixup(xi, xo, lam)
    if cfg.method == "mixoe":
        batches = [x_in, x_mix] + ([xo] if cfg.lc else [])
        outs = _forward(model, batches, joint)
        z_in, z_mix = outs[0], outs[1]
        z_mixed_input = z_mix
        z_out = outs[2] if cfg.lc else None
    else:  # logit_mixoe, mixed at cfg.mix_layer
        layer = cfg.mix_layer
        h_in, h_out = _forward(lambda x: model(x, stop=layer), [x_in, xo], joint)
        h_mix = L.logit_mix(h_in[:n], h_out, lam)
        if layer == "fc":
            z_in, z_out, z_mix = h_in, h_out, h_mix
        else:
            z_in, z_out, z_mix = _forward(lambda h: model(h, start=layer),
                                          [h_in, h_out, h_mix], joint)
        z_mixed_input = _forward(model, [x_mix], joint)[0] if cfg.lc else None
    ce_id = L.soft_cross_entropy(z_in, L.mixoe_targets(y, num_classes, 1.0))
    ce_mix = L.soft_cross_entropy(z_mix, L.mixoe_targets(y[:n], num_classes, lam))
    loss = ce_id + cfg.beta * ce_mix
    terms.update(ce_id=ce_id.item(), ce_mix=ce_mix.item(), lam=float(lam))
    if cfg.lc:
        lc = L.logit_consistency(z_mixed_input, z_in[:n], z_out, lam)
        loss = loss + cfg.gamma * lc
        terms["lc"] = lc.item()
    return loss, terms
