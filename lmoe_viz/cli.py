"""``lmoe-viz``: the command line. ``main(argv=None)`` is callable from tests and notebooks.

Every mistake a user can cause ends in one line on stderr (``lmoe-viz: error: ...``) that
names the bad value and the fix, and exit status 2; nothing already on disk is replaced.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import METHODS, MIX_LAYERS, MIX_OPS, RunConfig
from .errors import UserError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="digits", help="digits, fashion-mnist, bird, aircraft, butterfly, car")
    p.add_argument("--data-root", default=None, help="folder holding the dataset(s)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    p.add_argument("--split", type=int, default=0, help="hold-out split seed (MixOE's `split`)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--correct-quirks", action="store_true",
                   help="correct MixOE's butterfly/bird label quirks (default: faithful)")


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
    p.add_argument("--overwrite", action="store_true", help="replace a run of another config in --out")
    p.add_argument("--no-progress", action="store_true")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("lmoe-viz", add_help=add_help,
                                     description="Logit MixOE: train, evaluate, analyse logits.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pretrain", help="train on ID data with cross-entropy")
    _train_args(p)
    f = sub.add_parser("finetune", help="fine-tune with OE, MixOE or Logit MixOE")
    _train_args(f)
    f.add_argument("--init", required=True, help="checkpoint from `lmoe-viz pretrain`")
    f.add_argument("--method", required=True, help=", ".join(m for m in METHODS if m != "baseline"))
    f.add_argument("--lc", action="store_true", help="add the logit-consistency loss, eq. (15)")
    f.add_argument("--alpha", type=float, default=1.0)
    f.add_argument("--beta", type=float, default=1.0)
    f.add_argument("--gamma", type=float, default=1.0)
    f.add_argument("--mix-op", default="mixup", help=", ".join(MIX_OPS))
    f.add_argument("--mix-layer", default=None, help=", ".join(MIX_LAYERS))
    f.add_argument("--batching", default=None, help="separate or joint forwards (see methods.py)")
    e = sub.add_parser("evaluate", help="metrics of a checkpoint on ID test vs OOD test")
    _common(e)
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--score", default="msp", help="msp, maxlogit, energy, l2norm")
    e.add_argument("--fpr-convention", default="threshold", help="threshold or oe (metrics.py)")
    e.add_argument("--out", default=None, help="JSON file for the metrics (default beside the checkpoint)")
    d = sub.add_parser("data", help="where the data was found, what is missing; build-info")
    d.add_argument("action", nargs="?", default="check", help="check (default) or build-info")
    _common(d)
    from . import reproduce, sweep
    reproduce.add_parser(sub)
    sweep.add_parser(sub)
    return parser


def config_from_args(args) -> RunConfig:
    extra = {"aux_root": args.aux_root} if getattr(args, "aux_root", None) else {}
    method = getattr(args, "method", "baseline")
    return RunConfig(
        preset=args.preset, method=method, lc=getattr(args, "lc", False),
        alpha=getattr(args, "alpha", 1.0), beta=getattr(args, "beta", 1.0),
        gamma=getattr(args, "gamma", 1.0), mix_op=getattr(args, "mix_op", "mixup"),
        mix_layer=getattr(args, "mix_layer", None), batching=getattr(args, "batching", None),
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, seed=args.seed, split=args.split,
        faithful=not args.correct_quirks, limit_batches=args.limit_batches,
        data_root=args.data_root, device=args.device, num_workers=args.num_workers,
        init=getattr(args, "init", None), extra=extra).validate()


def cmd_train(args) -> int:
    from .train import train
    cfg = config_from_args(args)
    out = train(cfg, args.out, overwrite=args.overwrite, progress=not args.no_progress)
    if out:
        print(json.dumps({k: out[k] for k in ("accuracy", "auroc", "fpr95", "epoch") if k in out}))
    return 0


def cmd_evaluate(args) -> int:
    from .extract import extract
    from .io import atomic_write_json
    from .metrics import accuracy, ood_metrics
    from .scores import score
    from .scores import SCORES
    from .train import resolve_device
    if args.score not in SCORES:
        raise UserError(f"unknown score {args.score!r}; choose one of {', '.join(SCORES)}")
    res = extract(args.checkpoint, data_root=args.data_root, device=resolve_device(args.device))
    idt, ood = res["id_test"], res["ood_test"]
    m = {"checkpoint": args.checkpoint, "score": args.score,
         "accuracy": accuracy(idt["logits"], idt["labels"]),
         **ood_metrics(score(args.score, idt["logits"]), score(args.score, ood["logits"]),
                       args.fpr_convention)}
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / f"evaluate_{args.score}.json"
    atomic_write_json(out, m)
    print(json.dumps(m))
    return 0


def cmd_data(args) -> int:
    from .data.check import build_info_cmd, check
    if args.action == "build-info":
        return build_info_cmd(args.preset, args.data_root)
    if args.action != "check":
        raise UserError(f"unknown data action {args.action!r}; use check or build-info")
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
