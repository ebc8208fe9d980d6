"""Post-hoc OOD detectors from pytorch-ood (``pytorch-ood`` 0.4, kkirchheim/pytorch-ood),
used as that library ships them, in a registry beside the logit scores of scores.py.

A detector is one :class:`Detector` entry of :data:`DETECTORS`: its lower-case name, the
pytorch-ood class, its hyper-parameters (the library's defaults unless said), whether it
is fitted on the ID training images, and **what it needs** (``needs``):

* ``logits``: the logits only (``entropy``; ``klmatching``, fitted);
* ``features``: the penultimate (globally pooled) features (``mahalanobis``, ``rmd``,
  ``knn``), fitted on the ID training features;
* ``head``: the features and the linear head's weights and bias (``vim``);
* ``activations``: the last stage's feature maps and the head, run on the images
  (``react``, ``ash``);
* ``gradients``: input gradients through the network (``odin``).

The first three also run from a logits/features file; the last two need the checkpoint.
pytorch-ood's outlier scores are larger for OOD; here every detector's score is negated,
so that, as for scores.py, higher = more in-distribution and every metric convention
applies unchanged. ``detector_scores`` computes the scores of extracted parts (cached
beside the logits, extract.py, under a key of the checkpoint, the detector, its
hyper-parameters and the fitting data); the fitted statistics of Mahalanobis, RMD and ViM
are cached there too (``cached_fit``), KNN and KL-matching refit from the cached features.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from pytorch_ood import detector as pood
from torch.utils.data import DataLoader, Subset

from .errors import UserError
from .io import atomic_save, dict_hash
from .sampling import sample_rows
from .scores import SCORES

NEEDS = ("logits", "features", "head", "activations", "gradients")
#: what a logits/features file (no checkpoint) can feed
FROM_ARRAYS = ("logits", "features", "head")
#: ID training images the activation and gradient detectors are fitted on (a seeded sample)
FIT_LIMIT = 5000


@dataclass(frozen=True)
class Detector:
    name: str
    label: str
    build: Callable                # (ctx: dict) -> a pytorch_ood detector
    needs: str                     # one of NEEDS
    fit: bool                      # fitted on the ID training part
    params: dict = field(default_factory=dict)   # hyper-parameters (enter the cache key)
    reference: str = ""
    state: tuple = ()              # the fitted attributes cached (tensors and numbers)


def _vim_d(ctx) -> int:
    """ViM's principal subspace: half the feature dimension (ViM's paper takes 1000 of
    2048 for ResNet-50), or ``params['d']`` when given."""
    return int(ctx["params"].get("d") or ctx["w"].shape[1] // 2)


#: the detectors, in table order
DETECTORS = {d.name: d for d in (
    Detector("entropy", "Entropy", lambda c: pood.Entropy(None), "logits", False,
             reference="pytorch-ood Entropy"),
    Detector("klmatching", "KL-matching", lambda c: pood.KLMatching(None), "logits", True,
             reference="Hendrycks et al., 2022; pytorch-ood KLMatching"),
    Detector("mahalanobis", "Mahalanobis", lambda c: pood.Mahalanobis(None), "features", True,
             reference="Lee et al., 2018; pytorch-ood Mahalanobis (no input preprocessing)",
             state=("mu", "cov", "precision")),
    Detector("rmd", "RMD", lambda c: pood.RMD(None), "features", True,
             reference="Ren et al., 2021; pytorch-ood RMD",
             state=("mu", "cov", "precision", "background_mu", "background_cov",
                    "background_precision")),
    Detector("knn", "KNN", lambda c: pood.KNN(None, k=c["params"]["k"]), "features", True,
             {"k": 50}, reference="Sun et al., 2022; pytorch-ood KNN (normalised features)"),
    Detector("vim", "ViM", lambda c: pood.ViM(None, d=_vim_d(c), w=c["w"], b=c["b"]), "head",
             True, {"d": None}, reference="Wang et al., 2022; pytorch-ood ViM",
             state=("principal_subspace", "alpha", "d")),
    Detector("react", "ReAct", lambda c: pood.ReAct(c["backbone"], c["head"], percentile=c["params"]["percentile"]), "activations",
             True, {"percentile": 0.9}, reference="Sun et al., 2021; pytorch-ood ReAct (energy)"),
    Detector("ash", "ASH-S", lambda c: pood.ASH(c["backbone"], c["head"], variant=c["params"]["variant"],
                                 percentile=c["params"]["percentile"]), "activations", False,
             {"variant": "ash-s", "percentile": 0.65}, reference="Djurisic et al., 2023; pytorch-ood ASH"),
    Detector("odin", "ODIN", lambda c: pood.ODIN(c["model"], eps=c["params"]["eps"],
                                  temperature=c["params"]["temperature"]), "gradients", False,
             {"eps": 0.0014, "temperature": 1000.0},
             reference="Liang et al., 2018; pytorch-ood ODIN (inputs as the network sees them)"),
)}


def detector_spec(name: str) -> Detector:
    """The DETECTORS entry of ``name``; UserError naming every score and detector when none."""
    if name not in DETECTORS:
        raise UserError(f"unknown score or detector {name!r}; choose one of "
                        f"{', '.join([*SCORES, *DETECTORS])}")
    return DETECTORS[name]


def check_arrays(name: str, parts: dict, has_head: bool, source: str) -> None:
    """A detector that needs what ``parts`` (a logits/features file) lacks: one line."""
    spec = detector_spec(name)
    if spec.needs not in FROM_ARRAYS:
        raise UserError(f"detector {name} needs the {spec.needs} of the network: evaluate its "
                        f"checkpoint (--checkpoint), not {source}")
    if spec.needs in ("features", "head") and any("features" not in p for p in parts.values()):
        raise UserError(f"detector {name} needs penultimate features and {source} has none; "
                        "add a features array, or use a logit score (msp, energy, entropy)")
    if spec.needs == "head" and not has_head:
        raise UserError(f"detector {name} needs the head's weights: add fc_weight and fc_bias "
                        f"to {source}")


def _ctx(spec: Detector, model=None, w=None, b=None) -> dict:
    ctx = {"params": dict(spec.params), "model": model, "w": w, "b": b}
    if model is not None:
        ctx["backbone"] = lambda x: model(x, stop="layer4")
        ctx["head"] = lambda h: model.fc(model.pool(h))
        if w is None:
            ctx["w"], ctx["b"] = model.fc.weight.detach().float().cpu(), model.fc.bias.detach().float().cpu()
    return ctx


def fitted(name: str, fit_part: dict | None, model=None, w=None, b=None, fit_dataset=None,
           device="cpu"):
    """The pytorch-ood detector ``name``, fitted on ``fit_part`` (the ID training part's
    logits, features and labels) or, for activations, on ``fit_dataset``'s images."""
    spec = detector_spec(name)
    det = spec.build(_ctx(spec, model, w, b))
    if not spec.fit:
        return det
    if spec.needs == "logits":
        det.fit_logits(torch.as_tensor(fit_part["logits"]), torch.as_tensor(fit_part["labels"]))
    elif spec.needs in ("features", "head"):
        det.fit_features(torch.as_tensor(fit_part["features"]), torch.as_tensor(fit_part["labels"]))
    else:
        det.to(device)
        det.fit(_xy_loader(fit_dataset, FIT_LIMIT))
    return det


def cached_fit(path: Path, name: str, fit):
    """The detector ``fit()`` returns, its fitted state (``Detector.state``) cached in
    ``path`` (tensors and numbers, read back with ``weights_only``) for detectors that
    declare one; the others (KNN's index, KL-matching's table) are refitted from the
    cached features, which costs about as much as reading them."""
    spec = DETECTORS[name]
    if spec.state and path.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            det = spec.build(_ctx(spec, **state.pop("_ctx")))
            for k, v in state.items():
                setattr(det, k, v)
            return det
        except Exception:  # noqa: BLE001 - a truncated or foreign file: fitted again below
            pass
    det = fit()
    if spec.state:
        ctx = {"w": getattr(det, "w", None), "b": getattr(det, "b", None)}
        atomic_save(path, lambda buf: torch.save(
            {"_ctx": ctx, **{k: getattr(det, k) for k in spec.state}}, buf))
    return det


def _xy_loader(dataset, limit: int | None = None, batch_size: int = 256):
    """Batches (x, y) of a dataset of (x, y, id) items (pytorch-ood's fit reads pairs)."""
    if limit is not None and limit < len(dataset):
        dataset = Subset(dataset, sample_rows(len(dataset), limit).tolist())
    return DataLoader(_Pairs(dataset), batch_size=batch_size, shuffle=False)


class _Pairs(torch.utils.data.Dataset):
    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        x, y, _ = self.dataset[i]
        return x, y


def score_arrays(det, name: str, part: dict) -> np.ndarray:
    """Higher = more ID: the negated pytorch-ood score of a part's logits or features."""
    spec = DETECTORS[name]
    with torch.no_grad():
        if spec.needs == "logits":
            out = det.predict_logits(torch.as_tensor(part["logits"]))
        else:
            out = det.predict_features(torch.as_tensor(part["features"]))
    return -np.asarray(out.double().cpu().numpy())


def score_images(det, name: str, dataset, device="cpu", batch_size: int = 128) -> np.ndarray:
    """Higher = more ID: the negated score of the network's activations or gradients."""
    out = []
    for x, _ in DataLoader(_Pairs(dataset), batch_size=batch_size, shuffle=False):
        x = x.to(device)
        if DETECTORS[name].needs == "gradients":
            out.append(det.predict(x).detach().double().cpu())
        else:
            with torch.no_grad():
                out.append(det.predict(x).double().cpu())
    return -torch.cat(out).numpy()


def cache_key(ckpt_sha: str, name: str, params: dict, fit_key: str) -> str:
    """Scores of a detector are cached under the checkpoint's content, the detector, its
    hyper-parameters and the content of what it was fitted on."""
    return dict_hash({"ckpt": ckpt_sha, "detector": name, "params": params, "fit": fit_key})


def cached_scores(cache_dir: Path, key: str, part: str, compute) -> np.ndarray:
    """``compute()``'s scores of ``part``, cached as ``<cache_dir>/detectors/<key>/<part>.npy``."""
    path = Path(cache_dir) / "detectors" / key / f"{part.replace(':', '_')}.npy"
    if path.is_file():
        try:
            return np.load(path)
        except (OSError, ValueError):
            pass                                # unreadable: recomputed below
    scores = compute()
    atomic_save(path, lambda buf: np.save(buf, scores))
    return scores
