"""Initial weights of the ResNet-50 presets: ImageNet (as MixOE), none, or a file.

MixOE builds ``torchvision.models.resnet50(pretrained=True)``, i.e. the
``ResNet50_Weights.IMAGENET1K_V1`` state dict (file ``resnet50-0676ba61.pth``), then
replaces ``fc``. :func:`load_initial_weights` does the same: every tensor except the head
is loaded (strictly: a missing, misshapen or unexpected key is an error) and ``fc`` keeps its fresh
initialisation, sized from the split.

* ``imagenet``: torchvision's cache (``$TORCH_HOME/hub/checkpoints``) is read first; when
  the file is not there, torchvision downloads it (with its hash check). Offline and not
  cached, one line names the file, the folder to put it in and the URL.
* ``none``: random initialisation (torchvision's defaults).
* ``PATH``: a torchvision ResNet-50 state dict (``{"state_dict": ...}`` / ``{"model": ...}``
  wrappers and DataParallel's ``module.`` prefix are accepted).

The record returned (name, file, sha256) goes into the run's checkpoint and metrics.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from .errors import UserError
from .io import file_sha256

IMAGENET_NAME = "IMAGENET1K_V1"


def imagenet_file() -> tuple[str, Path]:
    """(download URL, path in torchvision's cache) of ResNet50_Weights.IMAGENET1K_V1."""
    from torchvision.models import ResNet50_Weights
    url = ResNet50_Weights.IMAGENET1K_V1.url
    return url, Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _fetch_imagenet() -> Path:
    url, path = imagenet_file()
    if path.is_file():
        return path
    try:
        torch.hub.load_state_dict_from_url(url, progress=True, check_hash=True,
                                           map_location="cpu")
    except (OSError, RuntimeError) as exc:    # URLError is an OSError; hash mismatch a RuntimeError
        raise UserError(f"ImageNet weights {path.name} are not in {path.parent} and could not "
                        f"be downloaded ({type(exc).__name__}); download {url} and put it at "
                        f"{path}, or pass --weights PATH (a torchvision resnet50 state dict)"
                        ) from None
    return path


def _read_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"weights file {path} not found; pass --weights imagenet, none or the "
                        "path of a torchvision resnet50 state dict")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as exc:
        raise UserError(f"weights file {path} cannot be read as a state dict "
                        f"({type(exc).__name__}); pass a torchvision resnet50 state dict") from None
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UserError(f"weights file {path} is not a state dict of tensors; pass a "
                        "torchvision resnet50 state dict")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def _torchvision_names(model) -> dict:
    """Our parameter names -> torchvision ResNet-50's (stem.0 = conv1, stem.1 = bn1)."""
    out = {}
    for name in model.state_dict():
        tv = name.replace("stem.0.", "conv1.", 1).replace("stem.1.", "bn1.", 1)
        out[name] = tv
    return out


def weights_identity(weights: str | None) -> dict:
    """What identifies the initial weights of a run without fetching them: torchvision's
    ImageNet file is fixed by its name (its hash prefix is in the file name), a user's
    file by its sha256."""
    if weights in (None, "none"):
        return {"name": "none"}
    if weights == "imagenet":
        return {"name": IMAGENET_NAME, "file": os.path.basename(imagenet_file()[0])}
    path = Path(weights)
    if not path.is_file():
        raise UserError(f"weights file {path} not found; pass --weights imagenet, none or the "
                        "path of a torchvision resnet50 state dict")
    return {"name": "file", "sha256": file_sha256(path)}


def weights_record(weights: str | None) -> dict:
    """``{"name", "file", "sha256"}`` of ``weights`` (fetching ImageNet's file if needed);
    ``name`` is ``IMAGENET1K_V1``, ``file`` (a user's state dict) or ``none``."""
    if weights in (None, "none"):
        return {"name": "none", "file": None, "sha256": None}
    path = _fetch_imagenet() if weights == "imagenet" else Path(weights)
    if not path.is_file():
        raise UserError(f"weights file {path} not found; pass --weights imagenet, none or the "
                        "path of a torchvision resnet50 state dict")
    return {"name": IMAGENET_NAME if weights == "imagenet" else "file", "file": str(path),
            "sha256": file_sha256(path)}


def load_initial_weights(model, record: dict) -> None:
    """Load the weights of ``record`` (:func:`weights_record`) into a ResNet-50
    :class:`~lmoe_viz.models.StagedNet`, every tensor but the head ``fc``."""
    if record["file"] is None:
        return
    path = Path(record["file"])
    sd = _read_state_dict(path)
    names = _torchvision_names(model)
    own = model.state_dict()
    load, problems = {}, []
    for ours, tv in names.items():
        if ours.startswith("fc.") or (ours.endswith("num_batches_tracked") and tv not in sd):
            continue                 # the head is new; old state dicts lack the BN counters
        if tv not in sd:
            problems.append(f"missing {tv}")
        elif sd[tv].shape != own[ours].shape:
            problems.append(f"{tv} has shape {tuple(sd[tv].shape)}, ResNet-50 needs "
                            f"{tuple(own[ours].shape)}")
        else:
            load[ours] = sd[tv]
    known = set(names.values())
    extra = sorted(k for k in sd if k not in known and not k.startswith("fc."))
    if extra:            # e.g. a ResNet-101/152: same block shapes, more blocks
        problems.append(f"unexpected {extra[0]} ({len(extra)} tensor(s) ResNet-50 does not have)")
    if problems:
        raise UserError(f"weights file {path} does not fit ResNet-50 ({len(problems)} problem(s), "
                        f"first: {problems[0]}); pass a torchvision resnet50 state dict")
    model.load_state_dict(load, strict=False)
