"""Networks with named stages, and checkpoints that are safe to load.

Both networks expose the same stages, ``stem, layer1, layer2, layer3, layer4`` then a
global-average-pooled feature and the linear head ``fc``, so a method can mix at any
stage (:meth:`StagedNet.forward_to` / :meth:`StagedNet.forward_from`): mixing at ``fc``
is eq. (13), mixing at ``layer1..layer4`` is the intermediate-layer extension.

* ``resnet50``: torchvision's ResNet-50 (the paper's network), head sized from the split.
* ``small``: a ResNet-style network (one basic block per stage, widths 16-128) for
  presets of 64 px or less (digits 8 px, Fashion-MNIST 28 px).

Checkpoints are written atomically (io.py) and read with ``torch.load(weights_only=True)``
only: a checkpoint that carries a pickled object is refused and its payload never runs.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
import torch.nn as nn

from .errors import UserError
from .io import atomic_save

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 convolutions with BatchNorm (the first with ``stride``) and
    a shortcut (1x1 convolution and BatchNorm when the shape changes), ReLU after the sum."""
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (nn.Sequential() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.short(x))


class StagedNet(nn.Module):
    """stem -> layer1..layer4 -> global average pool -> fc."""

    stem: nn.Module
    fc: nn.Linear

    def forward_to(self, x, stage: str):
        """Run the stages up to and including ``stage`` (``input`` returns ``x``)."""
        if stage == "input":
            return x
        for name in STAGES:
            x = getattr(self, name)(x)
            if name == stage:
                return x
        if stage == "fc":
            return self.fc(self.pool(x))
        raise ValueError(f"unknown stage {stage!r}")

    def forward_from(self, h, stage: str, return_features: bool = False):
        """Continue from the output of ``stage`` to the logits."""
        if stage == "fc":
            return (h, None) if return_features else h
        start = 0 if stage == "input" else STAGES.index(stage) + 1
        for name in STAGES[start:]:
            h = getattr(self, name)(h)
        feat = self.pool(h)
        logits = self.fc(feat)
        return (logits, feat) if return_features else logits

    @staticmethod
    def pool(h):
        return torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1)

    def forward(self, x, start: str = "input", stop: str | None = None,
                return_features: bool = False):
        """``model(x)`` gives logits; ``stop=`` / ``start=`` run part of the network.

        Everything goes through ``forward`` so that DistributedDataParallel sees every
        partial forward (its gradient synchronisation hooks into ``forward``)."""
        if stop is not None:
            return self.forward_to(x, stop)
        return self.forward_from(x, start, return_features)


class SmallResNet(StagedNet):
    """The ``small`` network: a 3x3 stem, one BasicBlock per stage (widths 16, 32, 64, 128,
    strides 1, 2, 2, 2), global average pool and ``fc``."""
    def __init__(self, num_classes: int, channels: int = 1, widths=(16, 32, 64, 128)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        cin = widths[0]
        for i, (w, s) in enumerate(zip(widths, (1, 2, 2, 2)), 1):
            setattr(self, f"layer{i}", BasicBlock(cin, w, s))
            cin = w
        self.fc = nn.Linear(cin, num_classes)


class ResNet50(StagedNet):
    """The ``resnet50`` network: torchvision's ResNet-50 (no weights loaded here) as named stages,
    a new first convolution when ``channels`` is not 3, and an ``fc`` of ``num_classes``."""
    def __init__(self, num_classes: int, channels: int = 3):
        super().__init__()
        from torchvision.models import resnet50
        net = resnet50(weights=None)
        if channels != 3:
            net.conv1 = nn.Conv2d(channels, 64, 7, 2, 3, bias=False)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        for name in STAGES[1:]:
            setattr(self, name, getattr(net, name))
        self.fc = nn.Linear(net.fc.in_features, num_classes)


ARCHS = {"small": SmallResNet, "resnet50": ResNet50}


def build_model(arch: str, num_classes: int, channels: int) -> StagedNet:
    """A freshly initialised network of ``arch`` (ARCHS); UserError for an unknown one."""
    if arch not in ARCHS:
        raise UserError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    return ARCHS[arch](num_classes=num_classes, channels=channels)


def arch_spec(arch: str, num_classes: int, channels: int, image_size: int | None = None) -> dict:
    """What a checkpoint must match to be loaded into a run (network, head, input)."""
    return {"arch": arch, "num_classes": int(num_classes), "channels": int(channels),
            "image_size": image_size}


def save_checkpoint(path, payload: dict) -> None:
    """Write ``payload`` (tensors, numbers, strings, lists, dicts only) atomically."""
    atomic_save(path, lambda buf: torch.save(payload, buf))


def load_checkpoint(path, expect: dict | None = None) -> dict:
    """Load a checkpoint with ``weights_only=True``; one clear error for each failure."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found; pass the .pt written by "
                        "`lmoe-viz pretrain` or `lmoe-viz finetune`")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic[:2] != b"PK" and magic[:1] != b"\x80":      # torch.save: a zip, or a legacy pickle
        raise UserError(f"{path} is not a checkpoint (not a file written by torch.save); pass "
                        "the checkpoint.pt of a run folder")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc).lower():
            raise UserError(f"checkpoint {path} carries pickled objects that are not plain "
                            "weights; refused without running them (use a checkpoint written "
                            "by lmoe-viz)") from None
        raise UserError(f"checkpoint {path} is corrupt ({exc}); delete it and rerun") from None
    except Exception as exc:  # noqa: BLE001 - truncated zip, bad magic, ...
        raise UserError(f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}); "
                        "delete it and rerun the command that wrote it") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "arch" not in ckpt:
        raise UserError(f"{path} is not an lmoe-viz checkpoint (no model/arch entries)")
    if expect is not None:
        check_arch(ckpt, expect, path)
    return ckpt


def check_arch(ckpt: dict, expect: dict, path) -> None:
    """UserError unless the checkpoint's ``arch`` spec (arch_spec) equals ``expect``."""
    if ckpt["arch"] != expect:
        raise UserError(f"checkpoint {path} is for {ckpt['arch']}, but this run needs {expect}; "
                        "pass a checkpoint of the same preset and split")


def model_from_checkpoint(ckpt: dict) -> StagedNet:
    """The network of a loaded checkpoint, built from its ``arch`` spec with its weights;
    UserError when the weights do not fit that network."""
    spec = ckpt["arch"]
    model = build_model(spec["arch"], spec["num_classes"], spec["channels"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise UserError(f"checkpoint weights do not fit a {spec['arch']} network "
                        f"({str(exc).splitlines()[0]}); the file is damaged or of another "
                        "architecture") from None
    return model
