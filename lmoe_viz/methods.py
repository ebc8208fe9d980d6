"""One objective per method, in a registry: ``objective(...) -> (loss, terms)``.

=============  =====================================================  ================
method         loss                                                   PAPER.md
=============  =====================================================  ================
baseline       CE(f(x_in), y)                                         (2)-(3)
ce             CE(f(x_in), y), fine-tuning (control: no outliers)     (2)-(3)
oe             CE(f(x_in), y) + beta CE(f(x_out), u)                  (9)
energy_oe      CE(f(x_in), y) + beta (E_in + E_out hinge terms)       MixOE's baseline
mixoe          CE(f(x_in), y) + beta CE(f(x~), y~)                    (10)-(12)
logit_mixoe    CE(f(x_in), y) + beta CE(z~, y~), z~ mixed at a layer  (13)-(14)
... + lc       + gamma L_LC(f(x~), f(x_in), f(x_out))                 (15)-(16)
=============  =====================================================  ================

x~ is mixup or CutMix of the ID and outlier inputs. With CutMix, lambda is reset to the
ID area kept, and that one lambda is used for y~, z~ and L_LC, whether L_LC is on or
not: switching ``lc`` on adds the L_LC term and its forward, nothing else. For MixOE w/
L_LC, f(x~) is shared by both terms.

Logit MixOE, ``mix_layer``: ``fc`` is eq. (13) (logits mixed); ``stem`` (the first
author's ``conv1``) and ``layer1..layer4`` mix hidden features, the extension of the
first author's public code (feature_MixOE). Options after that code, each recorded in
the config:

* ``id_forward``: ``shared`` (default: CE(f(x_in), y) uses the ID half of the mixing
  forward, eq. (14) with one forward per input) or ``separate`` (feature_MixOE: the ID
  CE comes from its own ID-only forward, and the mixing forward runs ID and outliers
  again).
* ``mix_continue`` (hidden layers): ``all`` (default: the ID, outlier and mixed features
  all continue to logits) or ``mixed`` (feature_MixOE: only the mixed half continues;
  needs ``id_forward=separate``; with L_LC, f(x_out) takes one more forward).
* ``mix_noise``: ``none`` (default), ``additive`` (h~ + a b1 N(0, 1)), ``multiplicative``
  (h~ (1 + m b2 U(-1, 1))) or ``both`` ((1 + m b2 U(-1, 1)) h~ + a b1 N(0, 1), feature_MixOE's
  default), elementwise noise on the mixed features right after the mix, with one scalar
  b1, b2 ~ Beta(2, 5) a step each, a = ``noise_add`` (0.4), m = ``noise_mult`` (0.2).

The defaults are the paper's equations with the fewest forwards (2 passes a step without
L_LC, the cost the paper's method implies); ``--id-forward separate --mix-continue mixed``
reproduces the first author's code. Outliers: MixOE's OE and Energy-OE draw an outlier
batch twice the ID batch (``aux_ratio`` 2); mixing methods use the first
``len(x_in)`` outliers.

Forwards and BatchNorm (``bn``, batchnorm.py): ``separate`` runs one forward per batch
(ID, mixed, outliers: MixOE's code), ``joint`` one forward of every input of the step
concatenated (LogitMix's code; with ``id_forward=separate`` the ID-only batch joins it
too), ``id-stats`` separate forwards of which only the ID batch's moves the running
statistics. The first batch of each forward list is the step's ID batch.

L_LC (``lc_mode``, losses.py): ``fixed`` is eq. (15); ``outlier-share``, ``stop-id`` and
``norm`` are the adaptive variants of claim 5.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from . import losses as L
from .batchnorm import frozen_running_stats, joint_forward
from .errors import UserError


def draw_mix(rng: np.random.Generator, alpha: float, mix_op: str, height: int, width: int):
    """One step's lambda ~ Beta(alpha, alpha), and a CutMix box when ``mix_op='cutmix'``."""
    lam = float(rng.beta(alpha, alpha))
    box = L.cutmix_box(lam, height, width, rng) if mix_op == "cutmix" else None
    return lam, box


def _forward(model, fn, xs: list, cfg, id_first: bool = True) -> list:
    """Apply ``fn`` (a pass through ``model``) to each tensor of ``xs``: concatenated in
    one call under ``joint``, one call each otherwise (batchnorm.py). Under ``id-stats``
    only the forward of ``xs[0]``, the step's ID batch when ``id_first``, moves
    BatchNorm's running statistics."""
    if joint_forward(cfg.bn):
        out = fn(torch.cat(xs))
        return list(torch.split(out, [len(x) for x in xs]))
    outs = []
    for i, x in enumerate(xs):
        with frozen_running_stats(model, cfg.bn == "id-stats" and not (i == 0 and id_first)):
            outs.append(fn(x))
    return outs


def _ce_id(z_in, y, k):
    return L.soft_cross_entropy(z_in, L.mixoe_targets(y, k, 1.0))


def _input_mix(cfg, xi, xo, lam, box):
    """x~ and the lambda that goes with it (CutMix: the ID area kept)."""
    if cfg.mix_op == "cutmix":
        return L.cutmix(xi, xo, box)
    return L.mixup(xi, xo, lam), lam


def baseline(model, cfg, k, x_in, y, x_out, lam, box):
    """Eqs. (2)-(3): CE(f(x_in), y) alone, one forward of the ID batch (outliers, lambda and box
    unused); the objective of the pretraining and of the CE fine-tune."""
    loss = _ce_id(_forward(model, model, [x_in], cfg)[0], y, k)
    return loss, {"ce_id": loss}


def oe(model, cfg, k, x_in, y, x_out, lam, box):
    """Eq. (9): CE on ID plus beta CE(f(x_out), u); MixOE's OE: outlier batch 2x ID."""
    z_in, z_out = _forward(model, model, [x_in, x_out], cfg)
    ce_id = _ce_id(z_in, y, k)
    ce_out = L.soft_cross_entropy(z_out, L.uniform_targets(len(z_out), k, z_out.device))
    return ce_id + cfg.beta * ce_out, {"ce_id": ce_id, "ce_out": ce_out}


def energy_oe(model, cfg, k, x_in, y, x_out, lam, box):
    """MixOE's Energy-OE baseline (Liu et al., 2020): CE on ID plus
    beta [mean relu(E(x_in) - m_in)^2 + mean relu(m_out - E(x_out))^2],
    E(x) = -logsumexp f(x); beta 0.1, m_in -13, m_out -6 by default."""
    z_in, z_out = _forward(model, model, [x_in, x_out], cfg)
    ce_id = _ce_id(z_in, y, k)
    reg = L.energy_margin_loss(z_in, z_out, cfg.m_in, cfg.m_out)
    return ce_id + cfg.beta * reg, {"ce_id": ce_id, "energy_reg": reg}


def mixoe(model, cfg, k, x_in, y, x_out, lam, box):
    """Eqs. (10)-(12), plus gamma L_LC (eq. 15) with f(x~) shared by both terms."""
    n = min(len(x_in), len(x_out))
    xo = x_out[:n]
    x_mix, lam = _input_mix(cfg, x_in[:n], xo, lam, box)
    outs = _forward(model, model, [x_in, x_mix] + ([xo] if cfg.lc else []), cfg)
    z_in, z_mix = outs[0], outs[1]
    return _mix_terms(cfg, k, y, z_in, z_mix, lam, z_mix, outs[2] if cfg.lc else None, n)


def _noise(cfg, h):
    """feature_MixOE's post-mix noise (module doc); torch's RNG, seeded per epoch."""
    if cfg.mix_noise == "none":
        return h
    # the two scalars drawn on h's device, unvalidated: a validated Beta checks its
    # parameters with an `if` on a device tensor, a host sync per step
    b = torch.distributions.Beta(torch.full((2,), 2.0, device=h.device),
                                 torch.full((2,), 5.0, device=h.device),
                                 validate_args=False).sample()
    if cfg.mix_noise in ("multiplicative", "both"):
        h = h * (1 + cfg.noise_mult * b[1] * (2 * torch.rand_like(h) - 1))
    if cfg.mix_noise in ("additive", "both"):
        h = h + cfg.noise_add * b[0] * torch.randn_like(h)
    return h


def logit_mixoe(model, cfg, k, x_in, y, x_out, lam, box):
    """Eqs. (13)-(14) at ``mix_layer`` (+ gamma L_LC), with feature_MixOE's options.

    Named batches: ``id`` (the ID-only forward of ``id_forward=separate``), ``in`` (the
    ID half of the mixing forward), ``out``, ``x`` (x~ of L_LC) and ``mix`` (the mixed
    features). Under a joint regime all of them run in one forward up to ``mix_layer``
    and whatever continues after a hidden-layer mix continues in one forward too (LogitMix
    computes f(x) and f(x~) in one forward)."""
    layer = cfg.mix_layer
    n = min(len(x_in), len(x_out))
    xi, xo = x_in[:n], x_out[:n]
    x_mix = None
    if cfg.mix_op == "cutmix" or cfg.lc:     # the box's lambda is used with or without L_LC
        x_mix, lam = _input_mix(cfg, xi, xo, lam, box)
    separate_id = cfg.id_forward == "separate"
    inputs = {"id": x_in, "in": xi if separate_id else x_in, "out": xo, "x": x_mix}
    names = (["id"] if separate_id else []) + ["in", "out"] + (["x"] if cfg.lc else [])
    hs = dict(zip(names, _forward(model, lambda x: model(x, stop=layer),
                                  [inputs[m] for m in names], cfg)))
    mixed = _noise(cfg, L.logit_mix(hs["in"][:n], hs["out"], lam))
    feats = {m: hs[m] for m in names if m != "x"}
    feats["mix"] = mixed
    if cfg.lc:
        feats["x"] = hs["x"]
    if layer == "fc":
        z = feats
    else:               # continue what the loss needs: the mixed half at least
        keep = [m for m in feats if cfg.mix_continue == "all" or m in ("id", "mix")
                or (cfg.lc and m in ("out", "x"))]
        z = dict(zip(keep, _forward(model, lambda h: model(h, start=layer),
                                    [feats[m] for m in keep], cfg,
                                    id_first=keep[0] in ("id", "in"))))
    z_in = z["id"] if separate_id else z["in"]
    return _mix_terms(cfg, k, y, z_in, z["mix"], lam, z.get("x"), z.get("out"), n)


def _mix_terms(cfg, k, y, z_in, z_mix, lam, z_mixed_input, z_out, n):
    """CE(f(x_in), y) + beta CE(z_mix, y~) [+ gamma L_LC]; the terms to log."""
    ce_id = _ce_id(z_in, y, k)
    ce_mix = L.soft_cross_entropy(z_mix, L.mixoe_targets(y[:n], k, lam))
    loss = ce_id + cfg.beta * ce_mix
    terms = {"ce_id": ce_id, "ce_mix": ce_mix, "lam": float(lam)}
    if cfg.lc:
        lc = L.logit_consistency(z_mixed_input, z_in[:n], z_out, lam, cfg.lc_mode)
        loss = loss + cfg.gamma * lc
        terms["lc"] = lc
    return loss, terms


@dataclass(frozen=True)
class Method:
    """Everything the package knows about one method: every other module asks
    :data:`METHODS` (a new method is one entry here, with its objective above)."""
    name: str
    label: str                          # the paper's name, in tables and figures
    objective: Callable
    outliers: bool                      # trains on auxiliary outliers (else ID images only)
    mixes: bool                         # draws lambda ~ Beta(alpha, alpha); takes alpha and L_LC
    reference_bn: str                   # the forwards of its reference code (batchnorm.py)
    order: float                        # its place in tables, the pretrained model first
    mix_layers: tuple = ()              # where it may mix; the first is its default
    aux_ratio: int = 1                  # outlier batch = ratio x ID batch
    beta: float = 1.0                   # weight of the outlier term
    feature_options: bool = False       # takes feature_MixOE's id_forward / mix_continue / mix_noise
    colors: tuple = (None, None)        # palette indices (plots.PALETTE) without / with L_LC
    pretrains: bool = False             # the pretraining run (CE from the initial weights)


#: the methods, in table order. MixOE's OE and Energy-OE draw an outlier batch twice the
#: ID batch and its Energy-OE weighs the outlier term 0.1 (REFERENCES.md); the reference
#: forwards are MixOE's code (separate) and LogitMix's (joint), batchnorm.py
METHODS = {m.name: m for m in (
    Method("baseline", "Pretrained", baseline, outliers=False, mixes=False,
           reference_bn="separate", order=0, colors=(7, None), pretrains=True),
    Method("ce", "CE fine-tune", baseline, outliers=False, mixes=False,
           reference_bn="separate", order=0.5),
    Method("oe", "OE", oe, outliers=True, mixes=False, reference_bn="joint", order=1,
           aux_ratio=2, colors=(4, None)),
    Method("energy_oe", "Energy-OE", energy_oe, outliers=True, mixes=False,
           reference_bn="joint", order=1.5, aux_ratio=2, beta=0.1),
    Method("mixoe", "MixOE", mixoe, outliers=True, mixes=True, reference_bn="separate",
           order=2, mix_layers=("input",), colors=(0, 2)),
    Method("logit_mixoe", "Logit MixOE", logit_mixoe, outliers=True, mixes=True,
           reference_bn="joint", order=3,
           mix_layers=("fc", "stem", "layer1", "layer2", "layer3", "layer4"),
           feature_options=True, colors=(1, 3)),
)}
#: the methods that mix ID and outliers (claims 1-5 compare them), in table order
MIXING = tuple(n for n, m in METHODS.items() if m.mixes)
#: methods that train on ID images only: pretraining, and the CE fine-tune (the control
#: for "fine-tuned longer": the same schedule from the same pretrained model, no outliers)
ID_ONLY = tuple(n for n, m in METHODS.items() if not m.outliers)
#: the pretraining method (every fine-tune starts from its checkpoint)
PRETRAINING = next(n for n, m in METHODS.items() if m.pretrains)


def method_spec(name: str) -> Method:
    """The registry entry of ``name``; one line naming the choices if there is none."""
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def model_label(method: str, lc: bool = False, lc_mode: str = "fixed") -> str:
    """The paper's names; an adaptive L_LC adds its mode: ``Logit MixOE w/ L_LC (norm)``."""
    label = method_spec(method).label
    if not lc:
        return label
    return label + " w/ L_LC" + ("" if lc_mode == "fixed" else f" ({lc_mode})")


def objective(model, cfg, num_classes: int, x_in, y, x_out=None, lam: float = 1.0,
              box=None):
    """The loss of ``cfg.method`` for one step, and the terms to log: detached tensors on
    the step's device (the loop sums them there and reads them once per log interval)
    and ``lam`` as a float."""
    loss, terms = METHODS[cfg.method].objective(model, cfg, num_classes, x_in, y, x_out, lam, box)
    return loss, {k: v.detach() if torch.is_tensor(v) else float(v) for k, v in terms.items()}
