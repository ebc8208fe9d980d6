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
    lam = _t(lam).float().to(y.device)
    if lam.ndim == 1:
        lam = lam[:, None]
    onehot = F.one_hot(y, num_classes).float()
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


def logit_consistency(z_of_mixed_input, z_in, z_out, lam) -> torch.Tensor:
    """L_LC = || f(x~) - (lam f(x_in) + (1 - lam) f(x_out)) ||^2, eq. (15), with LogitMix's
    normalisation (eq. (7)): squared error summed over the K classes divided by K, averaged
    over the batch, i.e. the mean over all elements."""
    target = logit_mix(z_in, z_out, lam)
    return F.mse_loss(_t(z_of_mixed_input).float(), target.float())


def energy_margin_loss(z_in, z_out, m_in: float = -13.0, m_out: float = -6.0) -> torch.Tensor:
    """Energy-OE's regulariser (Liu et al., 2020; MixOE's Energy-OE baseline):
    mean_i relu(E(x_in,i) - m_in)^2 + mean_j relu(m_out - E(x_out,j))^2, with the energy
    E(x) = -logsumexp_k f(x)_k. ID energies are pushed below m_in, outliers' above m_out."""
    e_in = -torch.logsumexp(_t(z_in).float(), dim=-1)
    e_out = -torch.logsumexp(_t(z_out).float(), dim=-1)
    return (F.relu(e_in - m_in) ** 2).mean() + (F.relu(m_out - e_out) ** 2).mean()
