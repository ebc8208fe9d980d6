"""``--augment device``: MixOE's training augmentation (random crop, horizontal flip,
colour jitter of brightness 32/255 and saturation 0.5) applied in batches on the training
device to uint8 images, instead of image by image in the loader.

The loader still decodes and resizes (``Resize((512, 512))``, or reads the
``--decode cached`` rows) and, from the RNG each item is seeded with (streams.py), draws
the item's parameters exactly as torchvision's transforms draw them, in the same order:
``RandomCrop.get_params`` (top, left), ``RandomHorizontalFlip`` (one uniform < 0.5),
``ColorJitter.get_params`` (the order of its four operations, the brightness and the
saturation factors). So ranks, workers and resumes stay independent and the parameters
are those of the host path; :func:`augment_batch` then applies them to the whole batch.
Each enhancement is computed as PIL computes it (``Image.blend`` with the factor as a C
float: ``grey + f * (x - grey)`` in float32, truncated to uint8; the grey image of
``convert("L")`` in fixed point, ``(19595 R + 38470 G + 7471 B + 32768) >> 16``), so on
the CPU the batch equals the PIL pipeline's images bit for bit (tests). It stays a named
option that enters the run's name all the same: another device's float kernels are not
covered by that test.
"""
from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import ColorJitter, RandomCrop

BRIGHTNESS, SATURATION = 32 / 255, 0.5
#: ColorJitter's operation indices (torchvision): brightness, contrast, saturation, hue
BRIGHT, SAT = 0, 2


class DevicePrep:
    """The loader's half of ``--augment device``: ``resize`` (or nothing, for cached rows)
    then ``{"img": uint8 (3, R, R), "params": float64 (8,), "size": crop}``."""

    def __init__(self, crop: int, resize=None):
        self.crop, self.resize = crop, resize
        self.jitter = ColorJitter(brightness=BRIGHTNESS, saturation=SATURATION)

    def __call__(self, img) -> dict:
        if self.resize is not None:
            img = self.resize(img)
        arr = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
        top, left, _, _ = RandomCrop.get_params(img, (self.crop, self.crop))
        flip = float(torch.rand(1) < 0.5)
        order, b, _, s, _ = ColorJitter.get_params(self.jitter.brightness, self.jitter.contrast,
                                                   self.jitter.saturation, self.jitter.hue)
        params = torch.tensor([top, left, flip, *order.tolist(), b, s], dtype=torch.float64)
        return {"img": arr, "params": params, "size": torch.tensor(self.crop)}


def augment_batch(img: torch.Tensor, params: torch.Tensor, crop: int, mean, std) -> torch.Tensor:
    """The batch's crops, flips and jitters (module doc), then ``ToTensor`` and ImageNet
    normalisation: (B, 3, R, R) uint8 -> (B, 3, crop, crop) float32, on ``img``'s device."""
    b = img.shape[0]
    dev = img.device
    top, left = params[:, 0].long(), params[:, 1].long()
    ar = torch.arange(crop, device=dev)
    rows = (top[:, None] + ar)[:, :, None].expand(b, crop, crop)
    cols = (left[:, None] + ar)[:, None, :].expand(b, crop, crop)
    flip = params[:, 2] > 0.5
    cols = torch.where(flip[:, None, None], cols.flip(-1), cols)
    bidx = torch.arange(b, device=dev)[:, None, None]
    x = img.permute(0, 2, 3, 1)[bidx, rows, cols].permute(0, 3, 1, 2).float()   # (B, 3, c, c)
    order = params[:, 3:7].long()
    factors = {BRIGHT: params[:, 7].float(), SAT: params[:, 8].float()}   # PIL's C float
    for step in range(4):                       # ColorJitter's random order, per sample
        op = order[:, step]
        for which in (BRIGHT, SAT):
            use = op == which
            f = factors[which][:, None, None, None]
            if which == BRIGHT:                  # blend with black
                changed = f * x
            else:                                # blend with convert("L"), fixed point as PIL
                xi = x.to(torch.int32)
                grey = ((xi[:, 0] * 19595 + xi[:, 1] * 38470 + xi[:, 2] * 7471 + 32768) >> 16)
                grey = grey.float()[:, None]
                changed = grey + f * (x - grey)
            x = torch.where(use[:, None, None, None], changed.trunc().clamp(0, 255), x)
    m, s = _norm(dev, tuple(mean), tuple(std))
    return (x / 255.0 - m) / s


_NORMS: dict = {}


def _norm(dev, mean: tuple, std: tuple):
    """The normalisation constants on ``dev``, made once (no host copy a step)."""
    key = (str(dev), mean, std)
    if key not in _NORMS:
        _NORMS[key] = tuple(torch.tensor(v, dtype=torch.float32).to(dev)[None, :, None, None]
                            for v in (mean, std))
    return _NORMS[key]
