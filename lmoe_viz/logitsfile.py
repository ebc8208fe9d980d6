"""Logits from elsewhere: a model trained outside this toolkit (exported from OpenOOD, a
timm model, ...) analysed with the same metrics, conventions and detectors.

The format is one ``.npz`` (``numpy.savez``) holding:

======================  ============  ==================================================
array                   shape         meaning
======================  ============  ==================================================
``id_logits``           (N, K)        logits of the ID test images
``id_labels``           (N,)          their classes, 0..K-1
``ood_logits``          (M, K)        logits of the OOD test images
``id_features``         (N, D)        optional: penultimate features (feature detectors)
``ood_features``        (M, D)        optional, with ``id_features``
``train_logits``        (T, K)        optional: ID training images, for fitted detectors
``train_features``      (T, D)        optional, with ``train_labels``
``train_labels``        (T,)          optional
``fc_weight``           (K, D)        optional: the linear head (ViM)
``fc_bias``             (K,)          optional
======================  ============  ==================================================

``lmoe-viz evaluate --logits FILE`` gives the metrics row of a logit score, or of a
detector whose input the file holds (detectors.check_arrays); activation and gradient
detectors need a network, so they are refused for a file in one line.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from . import detectors as D
from .errors import UserError
from .metrics import metrics_row
from .scores import SCORES, score as score_of

REQUIRED = ("id_logits", "id_labels", "ood_logits")
OPTIONAL = ("id_features", "ood_features", "train_logits", "train_features", "train_labels",
            "fc_weight", "fc_bias")


def load_logits_file(path) -> dict:
    """``{"id", "ood", "train"?: {logits, labels, features?}, "head"?: (w, b)}`` of a file
    in the format of the module doc; every shape checked (one line naming the array)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise UserError(f"logits file {path} not found; pass the .npz written with numpy.savez "
                        "(lmoe_viz/logitsfile.py names its arrays)") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path} is not a readable .npz ({type(exc).__name__}); write it with "
                        "numpy.savez(path, id_logits=..., id_labels=..., ood_logits=...)") from None
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}; it must hold id_logits (N, K), "
                        "id_labels (N,) and ood_logits (M, K)")
    unknown = sorted(set(arrays) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise UserError(f"{path} holds unknown arrays {unknown}; known: {', '.join(REQUIRED + OPTIONAL)}")
    _check_shapes(path, arrays)
    out = {"id": {"logits": arrays["id_logits"], "labels": arrays["id_labels"]},
           "ood": {"logits": arrays["ood_logits"], "labels": -np.ones(len(arrays["ood_logits"]), int)}}
    if "id_features" in arrays:
        out["id"]["features"], out["ood"]["features"] = arrays["id_features"], arrays["ood_features"]
    if "train_labels" in arrays:
        out["train"] = {"labels": arrays["train_labels"],
                        **({"logits": arrays["train_logits"]} if "train_logits" in arrays else {}),
                        **({"features": arrays["train_features"]} if "train_features" in arrays else {})}
    if "fc_weight" in arrays:
        out["head"] = (arrays["fc_weight"], arrays["fc_bias"])
    return out


def _check_shapes(path: Path, a: dict) -> None:
    def bad(name, want):
        raise UserError(f"{path}: {name} has shape {tuple(a[name].shape)}, expected {want}")
    if a["id_logits"].ndim != 2 or len(a["id_logits"]) == 0:
        bad("id_logits", "(N, K) with N > 0")
    n, k = a["id_logits"].shape
    if a["ood_logits"].ndim != 2 or a["ood_logits"].shape[1] != k or len(a["ood_logits"]) == 0:
        bad("ood_logits", f"(M, {k}) with M > 0")
    if a["id_labels"].shape != (n,):
        bad("id_labels", f"({n},)")
    if not np.issubdtype(a["id_labels"].dtype, np.integer) or a["id_labels"].min() < 0 \
            or a["id_labels"].max() >= k:
        raise UserError(f"{path}: id_labels must be integers in 0..{k - 1} (the logits' classes)")
    for x, y in (("id_features", "ood_features"), ("fc_weight", "fc_bias")):
        if (x in a) != (y in a):
            raise UserError(f"{path} holds {x if x in a else y} without {y if x in a else x}; "
                            "give both or neither")
    train = [k for k in ("train_logits", "train_features") if k in a]
    if bool(train) != ("train_labels" in a):
        raise UserError(f"{path}: train_labels goes with train_logits and/or train_features "
                        f"(found {', '.join(train) or 'train_labels alone'}); give them together")
    if "id_features" in a:
        if a["id_features"].ndim != 2 or len(a["id_features"]) != n:
            bad("id_features", f"({n}, D)")
        d = a["id_features"].shape[1]
        if a["ood_features"].shape != (len(a["ood_logits"]), d):
            bad("ood_features", f"({len(a['ood_logits'])}, {d})")
        for name, want in (("train_features", (None, d)), ("fc_weight", (k, d))):
            if name in a and (a[name].ndim != 2 or a[name].shape[1] != d
                              or (want[0] is not None and a[name].shape[0] != want[0])):
                bad(name, f"({'T' if want[0] is None else want[0]}, {d})")
    if "fc_bias" in a and a["fc_bias"].shape != (k,):
        bad("fc_bias", f"({k},)")
    if "train_labels" in a:
        t = len(a["train_labels"])
        for name in ("train_logits", "train_features"):
            if name in a and len(a[name]) != t:
                bad(name, f"({t}, ...) like train_labels")
        if "train_logits" in a and a["train_logits"].shape[1] != k:
            bad("train_logits", f"({t}, {k})")


def evaluate_logits_file(path, score: str = "msp", convention: str = "ours") -> dict:
    """The metrics row of a logits file (module doc) under a score or detector."""
    data = load_logits_file(path)
    scores = file_scores(data, score, str(path))
    return {"logits_file": str(Path(path)), "protocol": "file",
            **metrics_row(data["id"], data["ood"], score, convention, scores)}


def file_scores(data: dict, score: str, source: str) -> tuple:
    """(ID scores, OOD scores) of a loaded logits file (``load_logits_file``) under a score
    or a detector whose input the file holds (higher = more ID); ``source`` names the file
    in the one-line errors of a detector it cannot feed."""
    idt, ood = data["id"], data["ood"]
    if score in SCORES:
        return score_of(score, idt["logits"]), score_of(score, ood["logits"])
    spec = D.detector_spec(score)
    D.check_arrays(score, {"id": idt, "ood": ood}, "head" in data, source)
    needed = f"train_{'logits' if spec.needs == 'logits' else 'features'}"
    if spec.fit and "train" not in data:
        raise UserError(f"detector {score} is fitted on ID training data: add train_labels and "
                        f"{needed} to {source}")
    if spec.fit and needed.removeprefix("train_") not in data["train"]:
        raise UserError(f"detector {score} needs {needed} in {source}")
    w, b = (torch.as_tensor(np.asarray(v, np.float32)) for v in data["head"]) \
        if "head" in data else (None, None)
    det = D.fitted(score, data.get("train"), w=w, b=b)
    return D.score_arrays(det, score, idt), D.score_arrays(det, score, ood)
