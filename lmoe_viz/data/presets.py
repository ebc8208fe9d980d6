"""The preset registry: what each preset trains on, at what size, with what defaults.

A preset turns a :class:`~lmoe_viz.config.RunConfig` into :class:`Splits`: ID train, ID
test, OOD test (test images of the held-out classes) and auxiliary outliers. Embedded
presets (``digits``, ``fashion-mnist``) need no download; the paper presets (``bird``,
``aircraft``, ``butterfly``, ``car``) read MixOE-format info files under ``--data-root``
with WebVision 1.0 as outliers (finegrained.py, webvision.py).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..errors import UserError
from . import fashion
from .outliers import HELDOUT_PHOTOS, matched_outliers, photo_crops
from .finegrained import build_paper_splits
from .splits import Splits, check_disjoint, holdout_split, id_label_map
from .tensors import TensorImages


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    num_id: int
    num_ood: int
    image_size: int
    channels: int
    arch: str                      # "small" (<= 64 px) or "resnet50"
    pretrain_defaults: dict
    finetune_defaults: dict
    num_workers: int
    build: Callable                # (cfg) -> Splits
    default_weights: str = "none"  # imagenet for the paper presets (MixOE's pretrained=True)
    default_select: str = "last"   # best-val for the paper presets (MixOE keeps it)


#: seed offset of the far-OOD photo crops (``paper`` protocol), apart from the training ones
FAR_OOD_SEED = 1_000_003


def _small(epochs, batch, lr, wd=5e-4):
    return {"epochs": epochs, "batch_size": batch, "lr": lr, "weight_decay": wd}


#: MixOE's optimisation settings for the paper presets (PAPER.md, protocol)
PAPER_PRETRAIN = {"epochs": 90, "batch_size": 32, "lr": 1e-3, "weight_decay": 1e-5}
PAPER_FINETUNE = {"epochs": 10, "batch_size": 32, "lr": 1e-3, "weight_decay": 1e-5}


def _tensor_splits(x_tr, y_tr, x_te, y_te, num_id, num_ood, split, seed_aux, image_size,
                   channels, augment, aux_count, info, outliers="crops", far_sets=None) -> Splits:
    """Hold-out split of an in-memory labelled dataset plus photo outliers of kind
    ``outliers`` (data/outliers.py), and the named far-OOD sets (``far_sets``: name ->
    n -> images in [0, 1], besides ``photos-heldout``)."""
    id_cls = holdout_split(num_id, num_ood, split)
    ood_cls = np.array([c for c in range(num_id + num_ood) if c not in set(id_cls.tolist())])
    check_disjoint(id_cls, ood_cls)
    lut = torch.full((num_id + num_ood,), -1, dtype=torch.long)
    for c, i in id_label_map(id_cls).items():
        lut[c] = i
    for name, y in (("train", y_tr), ("test", y_te)):
        missing = [int(c) for c in id_cls if int((y == int(c)).sum()) == 0]
        if missing:
            raise UserError(f"ID class(es) {missing} have no {name} images; check the data files")
    tr = torch.isin(y_tr, torch.as_tensor(id_cls))
    te_id = torch.isin(y_te, torch.as_tensor(id_cls))
    te_ood = torch.isin(y_te, torch.as_tensor(ood_cls))
    ids_tr, ids_te = torch.arange(len(y_tr)), torch.arange(len(y_te))
    mean, std = _norm(x_tr[tr])
    norm = lambda t: (t - mean) / std  # noqa: E731
    aux = (matched_outliers(aux_count, x_tr[tr], seed=seed_aux) if outliers == "matched"
           else photo_crops(aux_count, image_size, channels, seed=seed_aux))

    def far_ood(n: int) -> TensorImages:
        crops = photo_crops(n, image_size, channels, seed=FAR_OOD_SEED + seed_aux)
        return TensorImages(norm(crops), torch.full((n,), -1), torch.arange(n))

    def named(make):
        @functools.lru_cache(maxsize=1)             # built once per Splits
        def build() -> TensorImages:
            x = make(int(te_id.sum()))
            return TensorImages(norm(x), torch.full((len(x),), -1), torch.arange(len(x)))
        return build
    sets = {"photos-heldout": lambda n: photo_crops(n, image_size, channels,
                                                    seed=FAR_OOD_SEED + seed_aux,
                                                    photos=HELDOUT_PHOTOS)}
    sets.update(far_sets or {})
    return Splits(
        id_train=TensorImages(norm(x_tr[tr]), lut[y_tr[tr]], ids_tr[tr], augment=augment),
        id_test=TensorImages(norm(x_te[te_id]), lut[y_te[te_id]], ids_te[te_id]),
        ood_test=TensorImages(norm(x_te[te_ood]), torch.full((int(te_ood.sum()),), -1),
                              ids_te[te_ood]),
        aux=TensorImages(norm(aux), torch.full((aux_count,), -1), torch.arange(aux_count),
                         augment=augment),
        id_classes=id_cls.tolist(), ood_classes=ood_cls.tolist(), info={**info, "outliers": outliers, "pixel_norm": [mean, std]},
        far_ood=far_ood, ood_sets={k: named(v) for k, v in sets.items()})


def _norm(x: torch.Tensor):
    return float(x.mean()), float(x.std())


@functools.lru_cache(maxsize=2)
def _digits_arrays():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    y = torch.from_numpy(d.target.astype(np.int64))
    i_tr, i_te = train_test_split(np.arange(len(y)), test_size=1 / 3, random_state=0,
                                  stratify=d.target)
    return x[i_tr], y[i_tr], x[i_te], y[i_te]


def build_digits(cfg) -> Splits:
    """Splits of ``digits``: scikit-learn's digits (a stratified 2/3 train, 1/3 test cut, seed 0)
    held out by ``cfg.split``, 3 x train-size outliers of kind ``cfg.outliers``, and the
    far-OOD sets photos-heldout and fashion-8."""
    x_tr, y_tr, x_te, y_te = _digits_arrays()
    p = PRESETS["digits"]
    return _tensor_splits(x_tr, y_tr, x_te, y_te, p.num_id, p.num_ood, cfg.split,
                          seed_aux=cfg.split, image_size=8, channels=1, augment="shift",
                          aux_count=3 * len(y_tr),
                          info={"source": "sklearn.datasets.load_digits (embedded)",
                                "aux_source": "photos bundled with scikit-image/scikit-learn"},
                          outliers=cfg.outliers,
                          far_sets={"fashion-8": lambda n: _fashion_resized(cfg.data_root, 8, n)})


def build_fashion(cfg) -> Splits:
    """Splits of ``fashion-mnist``: the idx files (fashion.load, downloaded when not found) held
    out by ``cfg.split``, 36,000 outliers of kind ``cfg.outliers``, and the far-OOD sets
    photos-heldout and digits-28."""
    (x_tr, y_tr, x_te, y_te), where = fashion.load(cfg.data_root)
    p = PRESETS["fashion-mnist"]
    return _tensor_splits(x_tr, y_tr, x_te, y_te, p.num_id, p.num_ood, cfg.split,
                          seed_aux=cfg.split, image_size=28, channels=1,
                          augment="shift_flip", aux_count=36000,
                          info={"source": where,
                                "aux_source": "photos bundled with scikit-image/scikit-learn"},
                          outliers=cfg.outliers,
                          far_sets={"digits-28": lambda n: _digits_resized(28, n)})


#: seed of the seeded samples of the far-OOD datasets (digits-28, fashion-8)
FAR_SAMPLE_SEED = 0


def _resized(x: torch.Tensor, size: int, n: int) -> torch.Tensor:
    """A seeded sample of ``n`` images of ``x`` (all when fewer), resized to ``size`` px
    (bilinear, antialiased), in [0, 1]."""
    rows = np.sort(np.random.RandomState(FAR_SAMPLE_SEED).permutation(len(x))[:n])
    out = torch.nn.functional.interpolate(x[torch.as_tensor(rows)].float(), size=(size, size),
                                          mode="bilinear", antialias=True, align_corners=False)
    return out.clamp_(0, 1)


def _digits_resized(size: int, n: int) -> torch.Tensor:
    """Far-OOD ``digits-28`` of Fashion-MNIST: scikit-learn's digits (all 1,797, test and
    train: none is a Fashion-MNIST training image), white on black like the clothing."""
    x_tr, _, x_te, _ = _digits_arrays()
    return _resized(torch.cat([x_tr, x_te]), size, n)


def _fashion_resized(data_root, size: int, n: int) -> torch.Tensor:
    """Far-OOD ``fashion-8`` of digits: Fashion-MNIST test images at 8 px (needs the data)."""
    (_, _, x_te, _), _ = fashion.load(data_root, download=False)
    return _resized(x_te, size, n)


def _paper(name):
    def build(cfg) -> Splits:
        p = PRESETS[name]
        return build_paper_splits(name, cfg, p.num_id, p.num_ood)
    return build


PRESETS: dict[str, Preset] = {
    "digits": Preset("digits", "scikit-learn's 8x8 handwritten digits, 6 ID / 4 OOD digits "
                     "(embedded, no download)", 6, 4, 8, 1, "small",
                     _small(15, 64, 0.05), _small(5, 64, 0.01), 0, build_digits),
    "fashion-mnist": Preset("fashion-mnist", "Fashion-MNIST 28x28, 6 ID / 4 OOD clothing "
                            "classes (near-OOD)", 6, 4, 28, 1, "small",
                            _small(4, 128, 0.05), _small(2, 128, 0.01), 0, build_fashion),
}
for _name, (_nid, _nood, _desc) in {
        "bird": (200, 55, "NABirds (MixOE's 255-class subset), WebVision outliers"),
        "aircraft": (90, 10, "FGVC-Aircraft variants, WebVision outliers"),
        "butterfly": (150, 50, "Butterfly200 species, WebVision outliers"),
        "car": (150, 46, "Stanford Cars, WebVision outliers"),
        "cub": (100, 100, "CUB-200-2011 birds, WebVision outliers; --split ssb: the Semantic "
                "Shift Benchmark's 100 known classes (data/ssb.py)")}.items():
    PRESETS[_name] = Preset(_name, _desc, _nid, _nood, 448, 3, "resnet50", PAPER_PRETRAIN,
                            PAPER_FINETUNE, 8, _paper(_name), default_weights="imagenet",
                            default_select="best-val")


def get_preset(name: str) -> Preset:
    """The Preset registered as ``name``; UserError naming the presets when there is none."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def build_splits(cfg) -> Splits:
    """The Splits of ``cfg``: its preset's ``build(cfg)``."""
    return get_preset(cfg.preset).build(cfg)
