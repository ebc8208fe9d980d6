"""One typed run configuration, validated once, saved inside every artifact.

``RunConfig`` describes a pretraining run (``method="baseline"``) or a fine-tuning run
(``oe``, ``mixoe``, ``logit_mixoe``). Fields left ``None`` take the preset's default
(:func:`RunConfig.resolved`). :meth:`RunConfig.identity` is the part of the config that
changes what is trained; its hash names runs and keys caches.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from .errors import UserError
from .io import dict_hash

METHODS = ("baseline", "oe", "mixoe", "logit_mixoe")
MIX_OPS = ("mixup", "cutmix")
MIX_LAYERS = ("input", "layer1", "layer2", "layer3", "layer4", "fc")
BATCHINGS = ("separate", "joint")
DEVICES = ("auto", "cpu", "cuda")
#: default forward batching of each method, as in its reference code (see methods.py)
DEFAULT_BATCHING = {"baseline": "separate", "oe": "joint", "mixoe": "separate",
                    "logit_mixoe": "joint"}
#: default mixing place of each method: MixOE mixes inputs, Logit MixOE logits (eq. 13)
DEFAULT_MIX_LAYER = {"mixoe": "input", "logit_mixoe": "fc"}


@dataclass
class RunConfig:
    preset: str = "digits"
    method: str = "baseline"          # baseline (CE on ID), oe, mixoe, logit_mixoe
    lc: bool = False                  # add the logit-consistency term, eq. (15)-(16)
    alpha: float = 1.0                # lambda ~ Beta(alpha, alpha)
    beta: float = 1.0                 # weight of the outlier term, eqs. (9), (12), (14)
    gamma: float = 1.0                # weight of L_LC, eq. (16)
    mix_op: str = "mixup"             # input-space mixing: mixup or cutmix
    mix_layer: Optional[str] = None   # input | layer1..layer4 | fc (None: method default)
    batching: Optional[str] = None    # separate | joint forwards (None: method default)
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    weight_decay: Optional[float] = None
    seed: int = 0                     # drives every random draw of the run
    split: int = 0                    # hold-out split seed (MixOE's `split`)
    faithful: bool = True             # keep MixOE's dataset quirks (see data/finegrained.py)
    limit_batches: Optional[int] = None  # cap steps per epoch (smoke tests)
    data_root: Optional[str] = None
    device: str = "auto"
    num_workers: Optional[int] = None
    init: Optional[str] = None        # checkpoint to fine-tune from
    extra: dict = field(default_factory=dict)

    def validate(self) -> "RunConfig":
        from .data.presets import PRESETS
        if self.preset not in PRESETS:
            raise UserError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        _choice("method", self.method, METHODS)
        _choice("mix_op", self.mix_op, MIX_OPS)
        _choice("device", self.device, DEVICES)
        if self.mix_layer is not None:
            _choice("mix_layer", self.mix_layer, MIX_LAYERS)
        if self.batching is not None:
            _choice("batching", self.batching, BATCHINGS)
        if not self.alpha > 0:
            raise UserError(f"alpha must be > 0 (lambda ~ Beta(alpha, alpha)), got {self.alpha}; "
                            "pass e.g. --alpha 1")
        for name in ("beta", "gamma"):
            if not getattr(self, name) >= 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}; pass e.g. --{name} 1")
        for name in ("epochs", "batch_size", "limit_batches"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise UserError(f"{name} must be a positive integer, got {v!r}")
        for name in ("lr", "weight_decay"):
            v = getattr(self, name)
            if v is not None and not v >= 0:
                raise UserError(f"{name} must be >= 0, got {v!r}")
        if self.lc and self.method not in ("mixoe", "logit_mixoe"):
            raise UserError(f"--lc applies to mixoe and logit_mixoe, not to method {self.method!r}")
        if self.method == "mixoe" and self.mix_layer not in (None, "input"):
            raise UserError(f"mixoe mixes inputs; mix_layer {self.mix_layer!r} needs "
                            "--method logit_mixoe (layer1..layer4 is the intermediate-layer extension)")
        if self.method == "logit_mixoe" and self.mix_layer == "input":
            raise UserError("logit_mixoe with mix_layer 'input' is MixOE: use --method mixoe")
        return self

    def resolved(self) -> "RunConfig":
        """A copy with every ``None`` default filled from the preset and the method."""
        from .data.presets import get_preset
        preset = get_preset(self.preset)
        finetune = self.method != "baseline"
        d = preset.finetune_defaults if finetune else preset.pretrain_defaults
        out = dataclasses.replace(self)
        for key in ("epochs", "batch_size", "lr", "weight_decay"):
            if getattr(out, key) is None:
                setattr(out, key, d[key])
        if out.num_workers is None:
            out.num_workers = preset.num_workers
        if out.batching is None:
            out.batching = DEFAULT_BATCHING[out.method]
        if out.mix_layer is None:
            out.mix_layer = DEFAULT_MIX_LAYER.get(out.method, "input")
        return out.validate()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown config field(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def identity(self) -> dict:
        """Fields that change what is trained (not where data lives or which device runs).

        The initial checkpoint enters the run's identity through its content hash
        (train.py), not its path."""
        d = self.to_dict()
        for key in ("data_root", "device", "num_workers", "init"):
            d.pop(key)
        return d

    def run_hash(self) -> str:
        return dict_hash(self.identity())


def _choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise UserError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
