"""``lmoe-viz``: the command line. ``main(argv=None)`` is callable from tests and notebooks.

Every mistake a user can cause ends in one line on stderr (``lmoe-viz: error: ...``) that
names the bad value and the fix, and exit status 2; nothing already on disk is replaced.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .config import RunConfig
from . import reproduce, studycmd, sweep
from .datacmd import build_info_cmd, check
from .detectors import DETECTORS, detector_spec
from .data.protocols import PROTOCOLS
from .errors import UserError
from .evaluation import evaluate_checkpoint
from .io import atomic_write_json
from .logitsfile import evaluate_logits_file
from .methods import METHODS, PRETRAINING
from .metrics import METRIC_CONVENTIONS
from .models import load_checkpoint
from .runtime import resolve_device
from .scores import SCORES
from .train import train


#: what ``evaluate`` takes from the checkpoint (a value given that differs is refused)
CHECKPOINT_FIELDS = ("preset", "seed", "split", "faithful")


def _add_options(p: argparse.ArgumentParser, scope: str, from_checkpoint: bool = False) -> None:
    """The options of ``scope`` from RunConfig's fields (config.option): flag, type, default
    and help in one place. ``from_checkpoint`` (evaluate): the value comes from the
    checkpoint, so it defaults to None and one that contradicts it is refused
    (``_check_against_checkpoint``)."""
    for f in dataclasses.fields(RunConfig):
        meta = f.metadata
        if meta["cli"] != scope:
            continue
        flags = meta["flags"] or ("--" + f.name.replace("_", "-"),)
        default = None if from_checkpoint and f.name in CHECKPOINT_FIELDS else f.default
        if f.type == "bool":              # a flag turns its default (False, or True) over
            action = "store_false" if f.default else "store_true"
            p.add_argument(*flags, dest=f.name, action=action, default=default, help=meta["help"])
        else:
            kind = meta["kind"] or (int if "int" in f.type else float if "float" in f.type else str)
            shown = {"metavar": "{" + ",".join(meta["choices"]) + "}"} if meta["choices"] else {}
            # choices are checked by RunConfig.validate: one line naming them, not a usage dump
            p.add_argument(*flags, dest=f.name, type=kind, default=default, help=meta["help"], **shown)


def _check_against_checkpoint(args, ckpt_config: dict, path) -> None:
    """evaluate: a --preset/--seed/--split/--correct-quirks that differs from the
    checkpoint's own config would be silently ignored; refuse it in one line."""
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    for key in CHECKPOINT_FIELDS:
        value = getattr(args, key)
        if value is not None and ckpt_config.get(key) != value:
            flags = fields[key].metadata["flags"] or (f"--{key.replace('_', '-')}",)
            flag = flags[0] if fields[key].type == "bool" else f"{flags[0]} {value}"
            raise UserError(f"{flag} contradicts checkpoint {path} ({key} {ckpt_config.get(key)!r}); "
                            "leave it out: evaluate uses the checkpoint's own config")


def _train_args(p: argparse.ArgumentParser) -> None:
    _add_options(p, "common")
    p.add_argument("--out", required=True, help="run folder (checkpoint.pt, metrics.json)")
    _add_options(p, "train")
    p.add_argument("--overwrite", action="store_true", help="replace a run of another config in --out")
    p.add_argument("--allow-resume-change", action="store_true",
                   help="resume a run on another world size or device type")
    p.add_argument("--no-progress", action="store_true")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The ``lmoe-viz`` parser: subcommands pretrain, finetune, evaluate and data (their options
    from RunConfig's fields, _add_options), then reproduce, sweep and study (their add_parser)."""
    parser = argparse.ArgumentParser("lmoe-viz", add_help=add_help,
                                     description="Logit MixOE: train, evaluate, analyse logits.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pretrain", help="train on ID data with cross-entropy")
    _train_args(p)
    _add_options(p, "pretrain")
    f = sub.add_parser("finetune", help="fine-tune with OE, MixOE or Logit MixOE")
    _train_args(f)
    f.add_argument("--init", required=True, help="checkpoint from `lmoe-viz pretrain`")
    f.add_argument("--method", required=True, help=", ".join(m for m in METHODS if m != PRETRAINING))
    _add_options(f, "finetune")
    e = sub.add_parser("evaluate", help="metrics of a checkpoint under a named protocol")
    _add_options(e, "common", from_checkpoint=True)
    e.add_argument("--checkpoint", default=None, help="a checkpoint of `lmoe-viz pretrain/finetune`")
    e.add_argument("--logits", default=None, metavar="FILE.npz",
                   help="instead of a checkpoint: logits (and features) of any model, the .npz "
                        "format of lmoe_viz/logitsfile.py")
    e.add_argument("--score", default="msp",
                   help="a logit score (" + ", ".join(SCORES) + ") or a pytorch-ood detector ("
                        + ", ".join(DETECTORS) + "; detectors.py)")
    e.add_argument("--protocol", default="holdout", choices=PROTOCOLS,
                   help="holdout (ID test vs held-out classes), paper (ID val vs WebVision, "
                        "Table I), coarse (ID test vs the other datasets)")
    e.add_argument("--aux-root", default=None,
                   help="WebVision folder for the paper protocol (default: the run's, or DATA_ROOT/webvision)")
    e.add_argument("--metric-convention", default="ours", choices=METRIC_CONVENTIONS,
                   help="ours, mixoe (MixOE's calculate_log rules, 10 equal-size runs) or "
                        "openood (OpenOOD v1.5: OOD positive, trapezoid AUPRs)")
    e.add_argument("--recalibrate-bn", action="store_true",
                   help="diagnostic: recompute BatchNorm running statistics on ID training "
                        "data before evaluating (batchnorm.py)")
    e.add_argument("--out", default=None, help="JSON file for the metrics (default beside the checkpoint)")
    d = sub.add_parser("data", help="where the data was found, what is missing; build-info, import-mixoe")
    d.add_argument("action", nargs="?", default="check",
                   help="check (default), build-info (official release) or import-mixoe (MixOE's info files)")
    d.add_argument("--info-dir", default=None, help="import-mixoe: MixOE's info/ folder")
    _add_options(d, "common")
    reproduce.add_parser(sub)
    sweep.add_parser(sub)
    studycmd.add_parser(sub)
    return parser


def _exclude(spec: str) -> str:
    """A WebVision exclusion file is recorded by its absolute path (runs move between dirs)."""
    return spec if spec in ("mixoe", "none") else str(Path(spec).resolve())


def config_from_args(args) -> RunConfig:
    """The RunConfig of ``pretrain`` / ``finetune``: every field the command has as an
    option (``_add_options``), validated when training resolves it."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)
             if f.metadata["cli"] is not None and hasattr(args, f.name)}
    given["aux_exclude"] = _exclude(given["aux_exclude"])
    return RunConfig(**given, method=getattr(args, "method", PRETRAINING),
                     init=getattr(args, "init", None))


def cmd_train(args) -> int:
    """``pretrain`` / ``finetune``: train the RunConfig of the options into ``--out`` (train.train)
    and print its accuracy, AUROC, FPR95 and epoch as JSON (rank 0: other DDP ranks get no
    metrics); returns 0."""
    cfg = config_from_args(args)
    out = train(cfg, args.out, overwrite=args.overwrite, progress=not args.no_progress,
                allow_resume_change=args.allow_resume_change)
    if out:
        print(json.dumps({k: out[k] for k in ("accuracy", "auroc", "fpr95", "epoch") if k in out}))
    return 0


def cmd_evaluate(args) -> int:
    """``evaluate``: the metrics of ``--checkpoint`` under ``--protocol``, ``--score`` and
    ``--metric-convention`` (or of a ``--logits`` file), written as JSON (by default beside the
    checkpoint or file) and printed; returns 0. UserError for an unknown score or detector,
    for both or neither of --checkpoint and --logits, and for an option the checkpoint
    contradicts."""
    if args.score not in SCORES:
        detector_spec(args.score)          # one line naming both lists when it is neither
    if (args.checkpoint is None) == (args.logits is None):
        raise UserError("evaluate needs exactly one of --checkpoint CKPT (a run of this toolkit) "
                        "and --logits FILE.npz (any model's logits, lmoe_viz/logitsfile.py)")
    if args.logits is not None:
        return _evaluate_file(args)
    ckpt = load_checkpoint(args.checkpoint)             # loaded once: checked, then evaluated
    _check_against_checkpoint(args, ckpt["config"], args.checkpoint)
    m = evaluate_checkpoint(args.checkpoint, args.protocol, args.score, args.metric_convention,
                            data_root=args.data_root, device=resolve_device(args.device),
                            aux_root=args.aux_root, recalibrate_bn=args.recalibrate_bn,
                            loaded=ckpt)
    recal = "_recalibrated" if args.recalibrate_bn else ""
    name = f"evaluate_{args.protocol}_{args.score}_{args.metric_convention}{recal}.json"
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / name
    atomic_write_json(out, m)
    print(json.dumps(m))
    return 0


def _evaluate_file(args) -> int:
    """evaluate --logits: the file's own ID and OOD sets (no protocol, no data options)."""
    given = [f for f, v in (("--protocol", args.protocol != "holdout"),
                            ("--recalibrate-bn", args.recalibrate_bn), ("--data-root", args.data_root),
                            ("--aux-root", args.aux_root)) if v]
    given += [f"--{k.replace('_', '-')}" for k in CHECKPOINT_FIELDS if getattr(args, k) is not None]
    if given:
        raise UserError(f"{', '.join(given)} apply to checkpoints; a logits file holds its own ID "
                        "and OOD sets: leave them out")
    m = evaluate_logits_file(args.logits, args.score, args.metric_convention)
    path = Path(args.logits)
    out = Path(args.out) if args.out else path.with_name(
        f"{path.stem}_evaluate_{args.score}_{args.metric_convention}.json")
    atomic_write_json(out, m)
    print(json.dumps(m))
    return 0


def cmd_data(args) -> int:
    """``data``: ``check`` (datacmd.check), ``build-info`` or ``import-mixoe`` (needs
    ``--info-dir``), returning the action's exit status; UserError for any other action."""
    if args.action == "build-info":
        return build_info_cmd(args.preset, args.data_root)
    if args.action == "import-mixoe":
        if not args.info_dir:
            raise UserError("import-mixoe needs --info-dir DIR, the info/ folder of MixOE's "
                            "repository (github zjysteven/MixOE)")
        return build_info_cmd(args.preset, args.data_root, args.info_dir)
    if args.action != "check":
        raise UserError(f"unknown data action {args.action!r}; use check, build-info or import-mixoe")
    return check(args.preset, args.data_root, args.split, args.faithful)


COMMANDS = {"pretrain": cmd_train, "finetune": cmd_train, "evaluate": cmd_evaluate,
            "data": cmd_data}


def main(argv=None) -> int:
    """Parse ``argv`` (default: sys.argv[1:]) and run its command; returns the exit status: the
    command's, 2 after a UserError (one ``lmoe-viz: error:`` line on stderr), 130 on Ctrl-C.
    argparse's own usage errors raise SystemExit."""
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
