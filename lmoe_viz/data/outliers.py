"""Auxiliary outliers for the embedded presets, made from real photographs.

The photographs are the ones that ship inside scikit-image (``skimage.data``) and
scikit-learn (``load_sample_images``): people, a cat, coffee, a rocket, coins, the moon,
a Chinese temple, a flower, ... They share no class with handwritten digits or clothing.
They play the role that WebVision plays in the paper. Two kinds (``RunConfig.outliers``):

* ``crops`` (the default, as before): random crops at random scales of all photographs,
  resized to the preset's size (:func:`photo_crops`). They are grey, low-contrast images,
  while the embedded ID images are bright objects on black: a logistic regression on a
  16-bin intensity histogram tells them from ID training images at AUROC 0.997
  (Fashion-MNIST) and 1.000 (digits), a shortcut outlier exposure can learn.
* ``matched``: photo-textured shapes on a black background whose pixel values are exactly
  those of a randomly drawn ID training image (:func:`matched_outliers`): same histogram,
  mean, contrast and background fraction, so intensity statistics alone carry nothing.
  They use only the training photographs (``TRAIN_PHOTOS``); the held-out ones
  (``HELDOUT_PHOTOS``) make a far-OOD test set that no training outlier comes from.

Every image is drawn from one seed, so an outlier set is a pure function of its arguments.
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from ..io import array_digest
from ..io import cached_array

#: skimage.data images bundled with the wheel (no download needed)
SKIMAGE_PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon",
                  "hubble_deep_field", "immunohistochemistry", "clock", "brick", "grass",
                  "gravel", "text", "page")


#: scikit-learn's two sample images, named as load_sample_images lists them
SKLEARN_PHOTOS = ("china", "flower")
#: photographs never used for training outliers of kind ``matched``: the far-OOD test set
#: ``photos-heldout`` (an object, a scene, a texture, a document, a flower)
HELDOUT_PHOTOS = ("chelsea", "rocket", "gravel", "page", "flower")
#: the rest: the textures of the ``matched`` outliers
TRAIN_PHOTOS = tuple(n for n in SKIMAGE_PHOTOS + SKLEARN_PHOTOS if n not in HELDOUT_PHOTOS)


@functools.lru_cache(maxsize=1)
def named_photos() -> dict:
    """Every bundled photograph by name, float32 RGB in [0, 1], (H, W, 3), in the order of
    ``SKIMAGE_PHOTOS`` then ``SKLEARN_PHOTOS`` (a photo that needs a download is skipped)."""
    photos = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import skimage.data as skd
            for name in SKIMAGE_PHOTOS:
                try:
                    photos[name] = _to_rgb01(np.asarray(getattr(skd, name)()))
                except Exception:  # noqa: BLE001 - a photo that needs a download is skipped
                    continue
        except ImportError:
            pass
        try:
            from sklearn.datasets import load_sample_images
            for name, img in zip(SKLEARN_PHOTOS, load_sample_images().images):
                photos[name] = _to_rgb01(np.asarray(img))
        except Exception:  # noqa: BLE001
            pass
    if not photos:
        raise UserError("no bundled photographs found for the auxiliary outliers; "
                        "install scikit-image and scikit-learn (pip install -e .)")
    return photos


def load_photos(names=None) -> tuple:
    """The bundled photographs (all, or those of ``names`` that are present)."""
    photos = named_photos()
    return tuple(photos[n] for n in (names or photos) if n in photos)


def _to_rgb01(img: np.ndarray) -> np.ndarray:
    img = img.astype(np.float32)
    if img.max() > 1.0:
        img = img / 255.0
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def photo_crops(n: int, size: int, channels: int, seed: int,
                scale: tuple = (0.08, 0.6), photos: tuple | None = None) -> torch.Tensor:
    """``n`` random crops, (n, channels, size, size) float32 in [0, 1].

    Crop side is ``uniform(scale) * min(H, W)`` of a uniformly chosen photo, at a uniform
    position, resized with antialiasing, flipped horizontally with probability 1/2;
    grayscale (ITU-R 601 luma) when ``channels == 1``. Cached on disk (io.cached_array)
    under the arguments and the versions of the libraries that make the pixels: the 36,000
    Fashion-MNIST crops take ~11 s to draw and every run of a study needs them.
    """
    key = {"n": n, "size": size, "channels": channels, "seed": seed, "scale": list(scale),
           "versions": _versions()}
    if photos is not None:                  # a subset of the photographs (old keys stay valid)
        key["photos"] = list(photos)
    return torch.from_numpy(np.array(cached_array(
        "photo_crops", key, lambda: _draw_crops(n, size, channels, seed, scale, photos).numpy())))


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {"torch": torch.__version__, "numpy": np.__version__}
    for dist in ("scikit-image", "scikit-learn"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def _draw_crops(n: int, size: int, channels: int, seed: int, scale: tuple,
                names=None) -> torch.Tensor:
    photos = load_photos(names)
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


def matched_outliers(n: int, id_images: torch.Tensor, seed: int,
                     photos: tuple = TRAIN_PHOTOS) -> torch.Tensor:
    """``n`` outliers without a low-level shortcut, (n, 1, H, W) float32 in [0, 1].

    Each outlier takes one ID training image ``J`` (drawn uniformly from ``id_images``,
    (N, 1, H, W) in [0, 1]) and one grey photo crop ``T`` (:func:`photo_crops` of
    ``photos``), and rearranges J's own pixel values into a new picture:

    1. a shape: a smooth random field (Gaussian noise on a 4x4 grid, bicubic upsampled)
       plus a centred bump, so that shapes sit in the middle as the ID objects do; its
       ``k`` highest pixels are the foreground, ``k`` = the number of J's pixels above
       ``BACKGROUND`` (J's object area);
    2. J's ``k`` largest values go to the foreground in the order of T's brightness (the
       photo's texture); J's other values go to the background in the order of the field
       (J's faint edge values end up at the shape's edge).

    The outlier holds exactly J's multiset of pixel values, so its histogram, mean,
    contrast and background fraction are those of an ID image; only shape and texture
    differ. Cached on disk under the arguments and the ID images' content."""
    key = {"n": n, "seed": seed, "photos": list(photos), "id_images": array_digest(id_images),
           "versions": _versions()}
    return torch.from_numpy(np.array(cached_array(
        "matched_outliers", key, lambda: _draw_matched(n, id_images, seed, photos))))


#: a pixel at or below this value (of 1) counts as background
BACKGROUND = 5 / 255


def _draw_matched(n: int, id_images: torch.Tensor, seed: int, photos: tuple) -> np.ndarray:
    ids = id_images.numpy().reshape(len(id_images), -1).astype(np.float32)
    h, w = id_images.shape[-2:]
    textures = photo_crops(n, max(h, w), 1, seed=seed + 7919, photos=photos).numpy()
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    bump = -(((yy - (h - 1) / 2) / h) ** 2 + ((xx - (w - 1) / 2) / w) ** 2)
    out = np.empty((n, h * w), np.float32)
    for i in range(n):
        j = ids[rng.randint(len(ids))]
        coarse = torch.from_numpy(rng.randn(1, 1, 4, 4).astype(np.float32))
        field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[0, 0].numpy()
        field = (field + 6.0 * bump).ravel()
        values = np.sort(j)
        k = int((values > BACKGROUND).sum())
        order = np.argsort(field, kind="stable")            # background first, by the field
        fg, bg = order[len(order) - k:], order[:len(order) - k]
        tex = textures[i, 0, :h, :w].ravel()
        out[i, fg[np.argsort(tex[fg], kind="stable")]] = values[len(values) - k:]
        out[i, bg] = values[:len(values) - k]
    return out.reshape(n, 1, h, w)
