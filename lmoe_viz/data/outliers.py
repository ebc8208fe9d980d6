"""Auxiliary outliers for the embedded presets: crops of real photographs.

The photographs are the ones that ship inside scikit-image (``skimage.data``) and
scikit-learn (``load_sample_images``): people, a cat, coffee, a rocket, coins, the moon,
a Chinese temple, a flower, ... They share no class with handwritten digits or clothing.
Random crops at random scales, resized to the preset's image size, play the role that
WebVision plays in the paper. Every crop is drawn from one seed, so the outlier set is a
pure function of (seed, size, channels, count).
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from ..io import cached_array

#: skimage.data images bundled with the wheel (no download needed)
SKIMAGE_PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon",
                  "hubble_deep_field", "immunohistochemistry", "clock", "brick", "grass",
                  "gravel", "text", "page")


@functools.lru_cache(maxsize=1)
def load_photos() -> tuple:
    """All bundled photographs as float32 RGB arrays in [0, 1], (H, W, 3)."""
    photos = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import skimage.data as skd
            for name in SKIMAGE_PHOTOS:
                try:
                    img = np.asarray(getattr(skd, name)())
                except Exception:  # noqa: BLE001 - a photo that needs a download is skipped
                    continue
                photos.append(_to_rgb01(img))
        except ImportError:
            pass
        try:
            from sklearn.datasets import load_sample_images
            photos.extend(_to_rgb01(np.asarray(img)) for img in load_sample_images().images)
        except Exception:  # noqa: BLE001
            pass
    if not photos:
        raise UserError("no bundled photographs found for the auxiliary outliers; "
                        "install scikit-image and scikit-learn (pip install -e .)")
    return tuple(photos)


def _to_rgb01(img: np.ndarray) -> np.ndarray:
    img = img.astype(np.float32)
    if img.max() > 1.0:
        img = img / 255.0
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def photo_crops(n: int, size: int, channels: int, seed: int,
                scale: tuple = (0.08, 0.6)) -> torch.Tensor:
    """``n`` random crops, (n, channels, size, size) float32 in [0, 1].

    Crop side is ``uniform(scale) * min(H, W)`` of a uniformly chosen photo, at a uniform
    position, resized with antialiasing, flipped horizontally with probability 1/2;
    grayscale (ITU-R 601 luma) when ``channels == 1``. Cached on disk (io.cached_array)
    under the arguments and the versions of the libraries that make the pixels: the 36,000
    Fashion-MNIST crops take ~11 s to draw and every run of a study needs them.
    """
    key = {"n": n, "size": size, "channels": channels, "seed": seed, "scale": list(scale),
           "versions": _versions()}
    return torch.from_numpy(np.array(cached_array(
        "photo_crops", key, lambda: _draw_crops(n, size, channels, seed, scale).numpy())))


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {"torch": torch.__version__, "numpy": np.__version__}
    for dist in ("scikit-image", "scikit-learn"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def _draw_crops(n: int, size: int, channels: int, seed: int, scale: tuple) -> torch.Tensor:
    photos = load_photos()
    rng = np.random.RandomState(seed)
    out = torch.empty(n, channels, size, size)
    for i in range(n):
        img = photos[rng.randint(len(photos))]
        h, w = img.shape[:2]
        side = max(2, int(rng.uniform(*scale) * min(h, w)))
        top, left = rng.randint(h - side + 1), rng.randint(w - side + 1)
        crop = torch.from_numpy(img[top:top + side, left:left + side]).permute(2, 0, 1)
        crop = F.interpolate(crop[None], size=(size, size), mode="bilinear",
                             antialias=True, align_corners=False)[0]
        if rng.rand() < 0.5:
            crop = crop.flip(-1)
        if channels == 1:
            crop = (0.299 * crop[0] + 0.587 * crop[1] + 0.114 * crop[2])[None]
        out[i] = crop.clamp_(0, 1)
    return out
