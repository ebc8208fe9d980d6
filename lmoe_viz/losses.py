"""The objectives' building blocks, one function per equation of PAPER.md.

All take torch tensors (numpy arrays are converted) and return tensors, so they can be
used inside a training step and in tests or notebooks alike.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _t(x) -> torch.Tensor:
    return torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x


def soft_cross_entropy(logits, target_probs) -> torch.Tensor:
    """CE(z, t) = - sum_k t_k log softmax(z)_k, averaged over the batch (PAPER.md notation;
    eqs. (2)-(3) with one-hot t, (9) with the uniform t = u, (12) and (14) with y~)."""
    logits, target_probs = _t(logits).float(), _t(target_probs).float()
    return -(target_probs * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def uniform_targets(n: int, num_classes: int, device=None) -> torch.Tensor:
    """u = (1/K, ..., 1/K) for ``n`` samples: the OE target of eq. (9)."""
    return torch.full((n, num_classes), 1.0 / num_classes, device=device)


def mixoe_targets(y, num_classes: int, lam) -> torch.Tensor:
    """y~ = lam * onehot(y) + (1 - lam) * u, eq. (11). ``lam`` is a scalar or per sample."""
    y = _t(y).long()
    onehot = F.one_hot(y, num_classes).float()
    if not isinstance(lam, torch.Tensor) and np.ndim(lam) == 0:
        # a step's scalar lambda stays on the host: no tensor is copied to the device (the
        # loop never waits for the host); float32 arithmetic, as the tensor path below
        lam32 = np.float32(lam)
        return float(lam32) * onehot + float((np.float32(1) - lam32) / np.float32(num_classes))
    lam = _t(lam).float().to(y.device)
    if lam.ndim == 1:
        lam = lam[:, None]
    return lam * onehot + (1 - lam) / num_classes


def mixup(x_in, x_out, lam) -> torch.Tensor:
    """x~ = lam * x_in + (1 - lam) * x_out, eq. (10) (mixup between ID and outlier)."""
    return lam * _t(x_in) + (1 - lam) * _t(x_out)


def cutmix_box(lam: float, height: int, width: int, rng: np.random.Generator) -> tuple:
    """A box of area ``(1 - lam) * H * W`` (before clipping) centred uniformly at random,
    as in CutMix and MixOE's code: returns (top, left, bottom, right)."""
    ratio = math.sqrt(1.0 - lam)
    ch, cw = int(height * ratio), int(width * ratio)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    top, bottom = max(cy - ch // 2, 0), min(cy + ch // 2, height)
    left, right = max(cx - cw // 2, 0), min(cx + cw // 2, width)
    return top, left, bottom, right


def cutmix(x_in, x_out, box: tuple):
    """Paste the outlier's ``box`` into the ID image (MixOE's CutMix variant of eq. (10)).

    Returns ``(x_mixed, lam)`` with lam reset to the ID area kept: 1 - box area / (H W).
    """
    x_in, x_out = _t(x_in), _t(x_out)
    top, left, bottom, right = box
    mixed = x_in.clone()
    mixed[..., top:bottom, left:right] = x_out[..., top:bottom, left:right]
    h, w = x_in.shape[-2:]
    lam = 1.0 - (bottom - top) * (right - left) / float(h * w)
    return mixed, lam


def logit_mix(z_in, z_out, lam) -> torch.Tensor:
    """z~ = lam * f(x_in) + (1 - lam) * f(x_out), eq. (13); gradients flow into both."""
    return lam * _t(z_in) + (1 - lam) * _t(z_out)


#: L_LC variants (``--lc-mode``): eq. (15) and three adaptive forms (claim 5)
LC_MODES = ("fixed", "outlier-share", "stop-id", "norm")


def logit_consistency(z_of_mixed_input, z_in, z_out, lam, mode: str = "fixed") -> torch.Tensor:
    """L_LC between f(x~) and the mixed logits t = lam f(x_in) + (1 - lam) f(x_out).

    ``fixed``, eq. (15) with LogitMix's normalisation (eq. (7)):
        L = 1/(B K) sum_i || f(x~_i) - t_i ||^2   (squared error averaged over all elements).

    The adaptive variants (claim 5: suppress OOD logits without eroding the class
    structure of ID logits):

    ``outlier-share``  L = (1 - lam) * L_fixed. The step's weight is the outlier share of
        x~: a mostly-ID mix (lam near 1) barely constrains the ID logits, a mostly-outlier
        mix gets the full term. (E[1 - lam] = 1/2 under Beta(alpha, alpha).)
    ``stop-id``  L_fixed with t = lam sg(f(x_in)) + (1 - lam) f(x_out), sg = stop-gradient:
        the ID logits are a fixed target, so consistency cannot pull them towards the
        outliers' (or shrink them); f(x~) and f(x_out) still receive gradients.
    ``norm``  L = 1/(B K) sum_i (||f(x~_i)|| - ||t_i||)^2: consistency of the logit norm
        only, the component that carries OOD-ness (Fig. 3), leaving the direction (class
        structure) free. By the reverse triangle inequality it is <= L_fixed.
    """
    z_x = _t(z_of_mixed_input).float()
    z_in, z_out = _t(z_in).float(), _t(z_out).float()
    if mode not in LC_MODES:
        raise ValueError(f"unknown lc_mode {mode!r}; choose one of {', '.join(LC_MODES)}")
    if mode == "stop-id":
        z_in = z_in.detach()
    target = logit_mix(z_in, z_out, lam)
    if mode == "norm":
        gap = z_x.norm(dim=-1) - target.norm(dim=-1)
        return (gap ** 2).mean() / z_x.shape[-1]
    loss = F.mse_loss(z_x, target)
    return (1 - lam) * loss if mode == "outlier-share" else loss


def energy_margin_loss(z_in, z_out, m_in: float = -13.0, m_out: float = -6.0) -> torch.Tensor:
    """Energy-OE's regulariser (Liu et al., 2020; MixOE's Energy-OE baseline):
    mean_i relu(E(x_in,i) - m_in)^2 + mean_j relu(m_out - E(x_out,j))^2, with the energy
    E(x) = -logsumexp_k f(x)_k. ID energies are pushed below m_in, outliers' above m_out."""
    e_in = -torch.logsumexp(_t(z_in).float(), dim=-1)
    e_out = -torch.logsumexp(_t(z_out).float(), dim=-1)
    return (F.relu(e_in - m_in) ** 2).mean() + (F.relu(m_out - e_out) ** 2).mean()
