"""``lmoe-viz``: the command line. ``main(argv=None)`` is callable from tests and notebooks.

Every mistake a user can cause ends in one line on stderr (``lmoe-viz: error: ...``) that
names the bad value and the fix, and exit status 2; nothing already on disk is replaced.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .batchnorm import BN_REGIMES
from .config import DECODES, MIX_LAYERS, MIX_OPS, OUTLIERS, SELECTS, RunConfig
from .data.protocols import PROTOCOLS
from .errors import UserError
from .losses import LC_MODES
from .methods import METHODS, PRETRAINING
from .metrics import METRIC_CONVENTIONS
from .scores import SCORES


def _common(p: argparse.ArgumentParser, from_checkpoint: bool = False) -> None:
    """Options shared by the commands. ``from_checkpoint`` (evaluate): preset, seed, split
    and quirks come from the checkpoint, so they default to None and a value that
    contradicts the checkpoint is refused (``_check_against_checkpoint``)."""
    unset = (lambda v: None) if from_checkpoint else (lambda v: v)
    p.add_argument("--preset", default=unset("digits"),
                   help="digits, fashion-mnist, bird, aircraft, butterfly, car")
    p.add_argument("--data-root", default=None, help="folder holding the dataset(s)")
    p.add_argument("--seed", type=int, default=unset(0), help="seed of every random draw")
    p.add_argument("--split", type=int, default=unset(0), help="hold-out split seed (MixOE's `split`)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--correct-quirks", action="store_true", default=unset(False),
                   help="correct MixOE's butterfly/bird label quirks (default: faithful)")


def _check_against_checkpoint(args, ckpt_config: dict, path) -> None:
    """evaluate: a --preset/--seed/--split/--correct-quirks that differs from the
    checkpoint's own config would be silently ignored; refuse it in one line."""
    given = {"preset": args.preset, "seed": args.seed, "split": args.split,
             "faithful": None if args.correct_quirks is None else not args.correct_quirks}
    for key, value in given.items():
        if value is not None and ckpt_config.get(key) != value:
            flag = "--correct-quirks" if key == "faithful" else f"--{key} {value}"
            raise UserError(f"{flag} contradicts checkpoint {path} ({key} {ckpt_config.get(key)!r}); "
                            "leave it out: evaluate uses the checkpoint's own config")


def _train_args(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--out", required=True, help="run folder (checkpoint.pt, metrics.json)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--num-workers", type=int, default=None)
    p.add_argument("--limit-batches", type=int, default=None, help="cap steps per epoch (smoke runs)")
    p.add_argument("--aux-root", default=None, help="WebVision folder (default DATA_ROOT/webvision)")
    p.add_argument("--aux-exclude", default="mixoe",
                   help="WebVision concepts removed: mixoe (MixOE's 223 WNIDs), none, or a file of WNIDs")
    p.add_argument("--select", default=None, choices=SELECTS,
                   help="epoch kept: best-val (MixOE; paper presets) or last (embedded presets)")
    p.add_argument("--image-size", type=int, default=None,
                   help="paper presets: crop size instead of 448 (resize keeps 512/448), for dry runs")
    p.add_argument("--decode", default="pil", choices=DECODES,
                   help="paper presets: pil (MixOE's PIL pipeline), draft (JPEG decoded at 1/2-1/8 "
                        "scale before the resize) or tensor (torchvision decode + transforms on "
                        "uint8 tensors); the last two are faster with slightly different pixels")
    p.add_argument("--compile", action="store_true", help="run the network through torch.compile")
    p.add_argument("--channels-last", action="store_true",
                   help="channels_last memory format on the CPU too (always on CUDA); faster "
                        "small-network steps, float sums in another order")
    p.add_argument("--eval-every", type=int, default=None,
                   help="test metrics every N epochs too, for curves (default: once, at the end)")
    p.add_argument("--overwrite", action="store_true", help="replace a run of another config in --out")
    p.add_argument("--allow-resume-change", action="store_true",
                   help="resume a run on another world size or device type")
    p.add_argument("--no-progress", action="store_true")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("lmoe-viz", add_help=add_help,
                                     description="Logit MixOE: train, evaluate, analyse logits.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pretrain", help="train on ID data with cross-entropy")
    _train_args(p)
    p.add_argument("--weights", default=None,
                   help="ResNet-50 start: imagenet (default of the paper presets, as MixOE), "
                        "none, or PATH of a torchvision resnet50 state dict")
    f = sub.add_parser("finetune", help="fine-tune with OE, MixOE or Logit MixOE")
    _train_args(f)
    f.add_argument("--init", required=True, help="checkpoint from `lmoe-viz pretrain`")
    f.add_argument("--method", required=True, help=", ".join(m for m in METHODS if m != PRETRAINING))
    f.add_argument("--lc", action="store_true", help="add the logit-consistency loss, eq. (15)")
    f.add_argument("--lc-mode", default="fixed", choices=LC_MODES,
                   help="L_LC: fixed (eq. 15), or adaptive: outlier-share, stop-id, norm (losses.py)")
    f.add_argument("--alpha", type=float, default=1.0)
    f.add_argument("--beta", type=float, default=None,
                   help="outlier-term weight (default 1" + _method_defaults("beta", 1.0) + ")")
    f.add_argument("--gamma", type=float, default=1.0)
    f.add_argument("--mix-op", default="mixup", help=", ".join(MIX_OPS))
    f.add_argument("--mix-layer", default=None, help=", ".join(MIX_LAYERS))
    f.add_argument("--bn", "--batching", dest="bn", default=None, choices=BN_REGIMES,
                   help="BatchNorm regime: separate (MixOE's forwards), joint (one forward), "
                        "id-stats (running statistics from ID rows only); default: the "
                        "method's reference code (batchnorm.py)")
    f.add_argument("--id-forward", default="shared",
                   help="Logit MixOE: ID CE from the mixing forward (shared) or its own (separate, feature_MixOE)")
    f.add_argument("--mix-continue", default="all",
                   help="Logit MixOE at a hidden layer: all features continue, or only the mixed (feature_MixOE)")
    f.add_argument("--mix-noise", default="none",
                   help="post-mix noise: none, additive, multiplicative, both (feature_MixOE's)")
    f.add_argument("--noise-add", type=float, default=0.4, help="additive noise level (feature_MixOE 0.4)")
    f.add_argument("--noise-mult", type=float, default=0.2, help="multiplicative noise level (0.2)")
    f.add_argument("--aux-ratio", type=int, default=None,
                   help="outlier batch = ratio x ID batch (default 1" + _method_defaults("aux_ratio", 1)
                        + ", as MixOE)")
    f.add_argument("--m-in", type=float, default=-13.0, help="Energy-OE ID margin")
    f.add_argument("--m-out", type=float, default=-6.0, help="Energy-OE outlier margin")
    f.add_argument("--outliers", default="crops", choices=OUTLIERS,
                   help="embedded presets: crops (photo crops) or matched (photo textures in "
                        "shapes with an ID image's pixel values: no intensity shortcut)")
    e = sub.add_parser("evaluate", help="metrics of a checkpoint under a named protocol")
    _common(e, from_checkpoint=True)
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--score", default="msp", help=", ".join(SCORES))
    e.add_argument("--protocol", default="holdout", choices=PROTOCOLS,
                   help="holdout (ID test vs held-out classes), paper (ID val vs WebVision, "
                        "Table I), coarse (ID test vs the other datasets)")
    e.add_argument("--aux-root", default=None,
                   help="WebVision folder for the paper protocol (default: the run's, or DATA_ROOT/webvision)")
    e.add_argument("--metric-convention", default="ours", choices=METRIC_CONVENTIONS,
                   help="ours, or mixoe (MixOE's calculate_log rules, 10 equal-size runs)")
    e.add_argument("--recalibrate-bn", action="store_true",
                   help="diagnostic: recompute BatchNorm running statistics on ID training "
                        "data before evaluating (batchnorm.py)")
    e.add_argument("--out", default=None, help="JSON file for the metrics (default beside the checkpoint)")
    d = sub.add_parser("data", help="where the data was found, what is missing; build-info, import-mixoe")
    d.add_argument("action", nargs="?", default="check",
                   help="check (default), build-info (official release) or import-mixoe (MixOE's info files)")
    d.add_argument("--info-dir", default=None, help="import-mixoe: MixOE's info/ folder")
    _common(d)
    from . import reproduce, study, sweep
    reproduce.add_parser(sub)
    sweep.add_parser(sub)
    study.add_parser(sub)
    return parser


def _method_defaults(field: str, common) -> str:
    """``; energy_oe 0.1``: the methods whose registry default of ``field`` differs."""
    return "".join(f"; {n} {getattr(m, field):g}" for n, m in METHODS.items()
                   if getattr(m, field) != common)


def _exclude(spec: str) -> str:
    """A WebVision exclusion file is recorded by its absolute path (runs move between dirs)."""
    return spec if spec in ("mixoe", "none") else str(Path(spec).resolve())


def config_from_args(args) -> RunConfig:
    extra = {"aux_root": args.aux_root} if getattr(args, "aux_root", None) else {}
    method = getattr(args, "method", PRETRAINING)
    return RunConfig(
        preset=args.preset, method=method, lc=getattr(args, "lc", False),
        alpha=getattr(args, "alpha", 1.0), beta=getattr(args, "beta", None),
        gamma=getattr(args, "gamma", 1.0), mix_op=getattr(args, "mix_op", "mixup"),
        mix_layer=getattr(args, "mix_layer", None), bn=getattr(args, "bn", None),
        lc_mode=getattr(args, "lc_mode", "fixed"),
        id_forward=getattr(args, "id_forward", "shared"),
        mix_continue=getattr(args, "mix_continue", "all"),
        mix_noise=getattr(args, "mix_noise", "none"), noise_add=getattr(args, "noise_add", 0.4),
        noise_mult=getattr(args, "noise_mult", 0.2),
        aux_ratio=getattr(args, "aux_ratio", None), m_in=getattr(args, "m_in", -13.0),
        m_out=getattr(args, "m_out", -6.0), weights=getattr(args, "weights", None),
        outliers=getattr(args, "outliers", "crops"),
        select=args.select, image_size=args.image_size, aux_exclude=_exclude(args.aux_exclude),
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, seed=args.seed, split=args.split,
        faithful=not args.correct_quirks, limit_batches=args.limit_batches,
        data_root=args.data_root, device=args.device, num_workers=args.num_workers,
        decode=args.decode, compile=args.compile, channels_last=args.channels_last,
        eval_every=args.eval_every,
        init=getattr(args, "init", None), extra=extra).validate()


def cmd_train(args) -> int:
    from .train import train
    cfg = config_from_args(args)
    out = train(cfg, args.out, overwrite=args.overwrite, progress=not args.no_progress,
                allow_resume_change=args.allow_resume_change)
    if out:
        print(json.dumps({k: out[k] for k in ("accuracy", "auroc", "fpr95", "epoch") if k in out}))
    return 0


def cmd_evaluate(args) -> int:
    from .evaluation import evaluate_checkpoint
    from .io import atomic_write_json
    from .runtime import resolve_device
    from .models import load_checkpoint
    if args.score not in SCORES:
        raise UserError(f"unknown score {args.score!r}; choose one of {', '.join(SCORES)}")
    _check_against_checkpoint(args, load_checkpoint(args.checkpoint)["config"], args.checkpoint)
    m = evaluate_checkpoint(args.checkpoint, args.protocol, args.score, args.metric_convention,
                            data_root=args.data_root, device=resolve_device(args.device),
                            aux_root=args.aux_root, recalibrate_bn=args.recalibrate_bn)
    recal = "_recalibrated" if args.recalibrate_bn else ""
    name = f"evaluate_{args.protocol}_{args.score}_{args.metric_convention}{recal}.json"
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / name
    atomic_write_json(out, m)
    print(json.dumps(m))
    return 0


def cmd_data(args) -> int:
    from .data.check import build_info_cmd, check
    if args.action == "build-info":
        return build_info_cmd(args.preset, args.data_root)
    if args.action == "import-mixoe":
        if not args.info_dir:
            raise UserError("import-mixoe needs --info-dir DIR, the info/ folder of MixOE's "
                            "repository (github zjysteven/MixOE)")
        return build_info_cmd(args.preset, args.data_root, args.info_dir)
    if args.action != "check":
        raise UserError(f"unknown data action {args.action!r}; use check, build-info or import-mixoe")
    return check(args.preset, args.data_root, args.split, not args.correct_quirks)


COMMANDS = {"pretrain": cmd_train, "finetune": cmd_train, "evaluate": cmd_evaluate,
            "data": cmd_data}


def main(argv=None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in COMMANDS:
            return COMMANDS[args.command](args)
        return args.func(args)
    except UserError as exc:
        print(f"lmoe-viz: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lmoe-viz: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
