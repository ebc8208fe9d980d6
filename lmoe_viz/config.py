"""One typed run configuration, validated once, saved inside every artifact.

``RunConfig`` describes a pretraining run (``method="baseline"``) or a fine-tuning run
(``oe``, ``mixoe``, ``logit_mixoe``). Fields left ``None`` take the preset's default
(:func:`RunConfig.resolved`). :meth:`RunConfig.identity` is the part of the config that
changes what is trained; its hash names runs and keys caches.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .batchnorm import BN_REGIMES
from .compat import named_identity, upgrade_config
from .data.presets import PRESETS, get_preset
from .data.ssb import SSB, split_value, ssb_presets
from .errors import UserError
from .io import file_sha256
from .runtime import DEVICES
from .losses import LC_MODES
from .methods import ID_ONLY, METHODS, PRETRAINING, method_spec
from .runtime import default_workers

MIX_OPS = ("mixup", "cutmix")
MIX_LAYERS = ("input", "stem", "layer1", "layer2", "layer3", "layer4", "fc")
SELECTS = ("best-val", "last")
MIX_CONTINUES = ("all", "mixed")
ID_FORWARDS = ("shared", "separate")
#: image decoding of the paper presets (data/finegrained.load_rgb)
DECODES = ("pil", "draft", "tensor", "cached")
AUGMENTS = ("host", "device")
MIX_NOISES = ("none", "additive", "multiplicative", "both")
#: auxiliary outliers of the embedded presets (data/outliers.py): photo crops, or photo
#: textures in ID-matched shapes (no intensity shortcut); the paper presets use WebVision
OUTLIERS = ("crops", "matched")


def option(default=None, help: str = "", *, cli: str | None = "train", trains=True,
           choices: tuple | None = None, flags: tuple | None = None, factory=None, kind=None):
    """A RunConfig field with what the CLI and the run identity need to know of it (one
    place): ``cli`` is where it is an option (``common``: every command; ``train``:
    pretrain and finetune; ``pretrain``; ``finetune``; None: not an option, or set by
    hand), ``trains`` whether it changes what is trained (``False``: where data lives or
    what runs it, left out of the identity; ``"content"``: enters it by its content's hash,
    train.run_identity), ``choices`` checked by validate(), ``flags`` the option's names
    when not ``--field-name``, ``kind`` the CLI's parser of the value when not the
    field's type."""
    meta = {"help": help, "cli": cli, "trains": trains, "choices": choices, "flags": flags,
            "kind": kind}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RunConfig:
    preset: str = option("digits", ", ".join(PRESETS), cli="common")
    method: str = option(PRETRAINING, "methods.METHODS (pretrain: baseline)", cli=None)
    lc: bool = option(False, "add the logit-consistency loss, eq. (15)", cli="finetune")
    lc_mode: str = option("fixed", "L_LC: fixed (eq. 15), or adaptive: outlier-share, stop-id, "
                          "norm (losses.py)", cli="finetune", choices=LC_MODES)
    alpha: float = option(1.0, "lambda ~ Beta(alpha, alpha)", cli="finetune")
    beta: Optional[float] = option(None, "outlier-term weight, eqs. (9), (12), (14) (default: the "
                                   "method's, methods.METHODS)", cli="finetune")
    gamma: float = option(1.0, "weight of L_LC, eq. (16)", cli="finetune")
    mix_op: str = option("mixup", "input-space mixing: mixup or cutmix", cli="finetune",
                         choices=MIX_OPS)
    mix_layer: Optional[str] = option(None, ", ".join(MIX_LAYERS) + " (default: the method's)",
                                      cli="finetune", choices=MIX_LAYERS)
    bn: Optional[str] = option(None, "BatchNorm regime: separate (MixOE's forwards), joint (one "
                               "forward), id-stats (running statistics from ID rows only); "
                               "default: the method's reference code (batchnorm.py)",
                               cli="finetune", choices=BN_REGIMES, flags=("--bn", "--batching"))
    mix_continue: str = option("all", "Logit MixOE at a hidden layer: all features continue, or "
                               "only the mixed (feature_MixOE)", cli="finetune",
                               choices=MIX_CONTINUES)
    id_forward: str = option("shared", "Logit MixOE: ID CE from the mixing forward (shared) or "
                             "its own (separate, feature_MixOE)", cli="finetune",
                             choices=ID_FORWARDS)
    mix_noise: str = option("none", "post-mix noise: none, additive, multiplicative, both "
                            "(feature_MixOE's)", cli="finetune", choices=MIX_NOISES)
    noise_add: float = option(0.4, "additive noise level (feature_MixOE 0.4)", cli="finetune")
    noise_mult: float = option(0.2, "multiplicative noise level (0.2)", cli="finetune")
    m_in: float = option(-13.0, "Energy-OE ID margin (MixOE's train_oe.py)", cli="finetune")
    m_out: float = option(-6.0, "Energy-OE outlier margin", cli="finetune")
    aux_ratio: Optional[int] = option(None, "outlier batch = ratio x ID batch (default: the "
                                      "method's; MixOE's OE and Energy-OE 2)", cli="finetune")
    weights: Optional[str] = option(None, "ResNet-50 start: imagenet (default of the paper "
                                    "presets, as MixOE), none, or PATH of a torchvision resnet50 "
                                    "state dict", cli="pretrain", trains="content")
    select: Optional[str] = option(None, "epoch kept: best-val (MixOE; paper presets) or last "
                                   "(embedded presets)", choices=SELECTS)
    image_size: Optional[int] = option(None, "paper presets: crop size instead of 448 (resize "
                                       "keeps 512/448), for dry runs")
    aux_exclude: str = option("mixoe", "WebVision concepts removed: mixoe (MixOE's 223 WNIDs), "
                              "none, or a file of WNIDs")
    outliers: str = option("crops", "embedded presets: crops (photo crops) or matched (photo "
                           "textures in shapes with an ID image's pixel values: no intensity "
                           "shortcut)", cli="finetune", choices=OUTLIERS)
    epochs: Optional[int] = option(None, "epochs (default: the preset's)")
    batch_size: Optional[int] = option(None, "ID batch (default: the preset's)")
    lr: Optional[float] = option(None, "learning rate (default: the preset's)")
    weight_decay: Optional[float] = option(None, "weight decay (default: the preset's)")
    seed: int = option(0, "seed of every random draw", cli="common")
    split: int | str = option(0, "hold-out split seed (MixOE's `split`), or ssb: the Semantic "
                              "Shift Benchmark's known classes (cub, aircraft, car; data/ssb.py)",
                              cli="common", kind=split_value)
    faithful: bool = option(True, "correct MixOE's butterfly/bird label quirks (default: "
                            "faithful)", cli="common", flags=("--correct-quirks",))
    limit_batches: Optional[int] = option(None, "cap steps per epoch (smoke runs)")
    data_root: Optional[str] = option(None, "folder holding the dataset(s)", cli="common",
                                      trains=False)
    device: str = option("auto", "auto, cpu or cuda", cli="common", trains=False,
                         choices=DEVICES)
    num_workers: Optional[int] = option(None, "loader workers (default: the preset's, capped by "
                                        "the CPUs)", trains=False)
    decode: str = option("pil", "paper presets: pil (MixOE's PIL pipeline), draft (JPEG decoded "
                         "at 1/2-1/8 scale before the resize), tensor (torchvision decode + "
                         "transforms on uint8 tensors): faster, slightly different pixels; or "
                         "cached (the ID images decoded and resized once into a memory-mapped "
                         "cache, $LMOE_VIZ_CACHE: pil's pixels exactly)", choices=DECODES)
    augment: str = option("host", "paper presets: host (the loader's PIL crop, flip and jitter, "
                          "MixOE's) or device (the same parameters from the same seeds, applied "
                          "in batches on the training device; rounds differently, so it names "
                          "the run; data/deviceaug.py)", choices=AUGMENTS)
    compile: bool = option(False, "run the network through torch.compile", trains=False)
    channels_last: bool = option(False, "channels_last memory format on the CPU too (always on "
                                 "CUDA); faster small-network steps, float sums in another order",
                                 trains=False)
    eval_every: Optional[int] = option(None, "test metrics every N epochs too, for curves "
                                       "(default: once, at the end)", trains=False)
    init: Optional[str] = option(None, "checkpoint from `lmoe-viz pretrain`", cli=None,
                                 trains="content")
    aux_root: Optional[str] = option(None, "WebVision folder of the outliers (default "
                                     "DATA_ROOT/webvision); its listing's hash, not the path, "
                                     "enters the run's name", cli="finetune", trains="content")

    def validate(self) -> "RunConfig":
        if self.preset not in PRESETS:
            raise UserError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        _choice("method", self.method, tuple(METHODS))
        for f in dataclasses.fields(self):          # each field's choices (option(choices=))
            value = getattr(self, f.name)
            if f.metadata.get("choices") and value is not None:
                _choice(f.name, value, f.metadata["choices"])
        self._validate_numbers()
        self._validate_combinations()
        return self

    def _validate_numbers(self) -> None:
        if not (self.alpha > 0 and math.isfinite(self.alpha)):
            raise UserError(f"alpha must be a finite number > 0 (lambda ~ Beta(alpha, alpha)), "
                            f"got {self.alpha}; pass e.g. --alpha 1")
        if self.split == SSB and self.preset not in ssb_presets():
            raise UserError(f"--split ssb applies to {', '.join(ssb_presets())} (the Semantic "
                            f"Shift Benchmark), not {self.preset}: pass an integer --split")
        for name in ("seed", "split"):       # numpy and torch seeds: 0 .. 2**32 - 1
            v = getattr(self, name)
            if name == "split" and v == SSB:
                continue
            if not isinstance(v, int) or not 0 <= v < 2 ** 32:
                raise UserError(f"{name} must be an integer in 0 .. 2**32 - 1, got {v!r}; "
                                f"pass e.g. --{name} 0")
        for name in ("beta", "gamma", "noise_add", "noise_mult"):
            v = getattr(self, name)
            if v is not None and not (v >= 0 and math.isfinite(v)):
                raise UserError(f"{name} must be a finite number >= 0, got {v}; pass e.g. "
                                f"--{name.replace('_', '-')} 1")
        for name in ("epochs", "batch_size", "limit_batches", "aux_ratio", "eval_every"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise UserError(f"{name} must be a positive integer, got {v!r}")
        if self.image_size is not None and (not isinstance(self.image_size, int)
                                            or self.image_size < 32):
            raise UserError(f"image_size must be an integer >= 32, got {self.image_size!r}; "
                            "pass e.g. --image-size 64 (dry runs) or leave it out (448)")
        for name, example in (("lr", "0.01"), ("weight_decay", "0.0005")):
            v = getattr(self, name)
            if v is not None and not (v >= 0 and math.isfinite(v)):
                raise UserError(f"{name} must be a finite number >= 0, got {v!r}; pass e.g. "
                                f"--{name.replace('_', '-')} {example}")
        for name, example in (("m_in", "-13"), ("m_out", "-6")):      # Energy-OE margins
            if not math.isfinite(getattr(self, name)):
                raise UserError(f"{name} must be a finite number, got {getattr(self, name)!r}; "
                                f"pass e.g. --{name.replace('_', '-')} {example}")

    def _validate_combinations(self) -> None:
        spec = method_spec(self.method)
        mixing = [n for n, m in METHODS.items() if m.mixes]
        if self.lc and not spec.mixes:
            raise UserError(f"--lc applies to {' and '.join(mixing)}, not to method {self.method!r}")
        if self.lc_mode != "fixed" and not self.lc:
            raise UserError(f"--lc-mode {self.lc_mode} shapes the L_LC term: add --lc")
        if spec.mixes and self.mix_layer is not None and self.mix_layer not in spec.mix_layers:
            other = [n for n, m in METHODS.items() if self.mix_layer in m.mix_layers]
            raise UserError(f"{self.method} mixes at {', '.join(spec.mix_layers)}; mix_layer "
                            f"{self.mix_layer!r} needs --method {' or '.join(other)}")
        if self.mix_continue == "mixed" and self.id_forward != "separate":
            raise UserError("mix_continue 'mixed' continues only the mixed half, so the ID CE "
                            "needs its own forward: add --id-forward separate (feature_MixOE)")
        if not spec.feature_options and (self.mix_continue != "all" or self.mix_noise != "none"
                                         or self.id_forward != "shared"):
            takes = [m.label for m in METHODS.values() if m.feature_options]
            raise UserError(f"--mix-continue/--id-forward/--mix-noise are {' and '.join(takes)} "
                            f"options (feature_MixOE), not for method {self.method!r}")

    def resolved(self) -> "RunConfig":
        """A copy with every ``None`` default filled from the preset and the method."""
        preset = get_preset(self.preset)
        spec = method_spec(self.method)
        finetune = not spec.pretrains
        d = preset.finetune_defaults if finetune else preset.pretrain_defaults
        out = dataclasses.replace(self)
        for key in ("epochs", "batch_size", "lr", "weight_decay"):
            if getattr(out, key) is None:
                setattr(out, key, d[key])
        if out.num_workers is None:
            out.num_workers = default_workers(preset.num_workers)
        if out.decode != "pil" and preset.arch != "resnet50":
            raise UserError(f"--decode {out.decode} applies to the paper presets (JPEG files); "
                            f"{preset.name} holds its images in memory: leave --decode out")
        if out.bn is None:               # the defaults of the method (methods.METHODS)
            out.bn = spec.reference_bn
        if out.mix_layer is None:
            out.mix_layer = spec.mix_layers[0] if spec.mix_layers else "input"
        if out.beta is None:
            out.beta = spec.beta
        if out.aux_ratio is None:
            out.aux_ratio = spec.aux_ratio
        if out.select is None:
            out.select = preset.default_select
        if not finetune and out.weights is None:
            out.weights = preset.default_weights
        if finetune and out.weights is not None:
            raise UserError(f"--weights {out.weights} applies to pretraining; a fine-tuning run "
                            "starts from --init and records the weights that checkpoint began from")
        if out.outliers != "crops" and preset.arch == "resnet50":
            raise UserError(f"--outliers {out.outliers} applies to the embedded presets; "
                            f"{preset.name} trains on WebVision outliers: leave --outliers out")
        if out.augment != "host" and (preset.arch != "resnet50" or out.decode == "tensor"):
            raise UserError(f"--augment {out.augment} applies to the paper presets' PIL and cached "
                            f"decodes, not {preset.name} with --decode {out.decode}: leave --augment out "
                            "or use --decode pil / cached")
        if out.aux_root is not None and preset.arch != "resnet50":
            raise UserError(f"--aux-root {out.aux_root} applies to the paper presets (WebVision "
                            f"outliers); {preset.name} ships its own: leave --aux-root out")
        if out.image_size is not None and preset.arch != "resnet50":
            raise UserError(f"--image-size applies to the paper presets; {preset.name} trains "
                            f"at its native {preset.image_size} px")
        if preset.arch != "resnet50" and out.weights not in (None, "none"):
            raise UserError(f"--weights {out.weights} applies to the ResNet-50 presets; "
                            f"{preset.name} uses a small network: leave --weights out")
        return out.validate()

    @property
    def input_size(self) -> int:
        """The crop size the network sees (the preset's, or ``image_size`` for dry runs)."""
        return self.image_size or get_preset(self.preset).image_size

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        d = upgrade_config(d)                      # older versions' names (compat.py)
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown config field(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def identity(self) -> dict:
        """Fields that change what is trained (not where data lives or which device runs),
        under the names old runs were hashed with (compat.named_identity).

        The initial checkpoint, the initial weights, the WebVision folder and a WebVision
        exclusion file enter the run's identity through their content's hash
        (train.run_identity; here for the exclusion file), not their path."""
        d = self.to_dict()
        for f in dataclasses.fields(self):          # option(trains=False or "content")
            if f.metadata["trains"] is not True:
                d.pop(f.name)
        if d["decode"] == "cached":          # pil's pixels exactly (data/imagecache.py)
            d["decode"] = "pil"
        d = named_identity(d, d["method"] in ID_ONLY)
        if d["batching"] == "joint" and d["id_forward"] == "separate":
            d["joint_id_forward"] = True     # the ID-only batch joined the joint forward (issue 8)
        if d["aux_exclude"] not in ("mixoe", "none") and Path(d["aux_exclude"]).is_file():
            d["aux_exclude"] = "sha256:" + file_sha256(d["aux_exclude"])   # content, not path
        return d


#: fields that do not change what is trained (where data lives, what runs it): left out of
#: the run identity, and of the differences a refused resume names (train.py)
RUNTIME_FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.metadata["trains"] is False)


def _choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise UserError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
