"""``lmoe-viz study``: its options, their checks (every bad value one line, before anything
trains) and the command: train the design (study.py), evaluate, write the verdicts
(claims.py) and, after a pilot, the power analysis (power.py)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .batchnorm import BN_REGIMES
from .bntable import bn_table
from .claims import ADAPTIVE_MODES, write_claims
from .config import OUTLIERS
from . import detectors as D
from .data.presets import PRESETS
from .errors import UserError
from .io import atomic_write_text
from .losses import LC_MODES
from .power import power_analysis, power_markdown
from .study import Study

def add_parser(sub) -> None:
    """Add the ``study`` subcommand and its options to ``sub`` (their checks: check_args)."""
    p = sub.add_parser("study", help="the paper's claims under a pre-registered plan (claims.py)")
    p.add_argument("--preset", default="fashion-mnist")
    p.add_argument("--out", required=True, help="study folder (runs/ inside)")
    p.add_argument("--results", default=None,
                   help="where results.csv, norms.csv, claims_verdicts.csv go (default OUT/results)")
    p.add_argument("--pretrained-models", type=int, default=5,
                   help="pretrained models (pretraining seeds 0..P-1); units are nested in them")
    p.add_argument("--units", type=int, default=None,
                   help="units (pretrained model, fine-tuning seed) for claims 1, 2, 4 and the "
                        "controls (default: the preset's minimum, claims.MIN_UNITS)")
    p.add_argument("--extra-units", type=int, default=None,
                   help="units that also train the alpha grid and the adaptive L_LC (claims 3, 5)")
    p.add_argument("--alphas", nargs="+", type=float, default=[0.3, 1.0, 3.0])
    p.add_argument("--bn", default="id-stats", help="the one BatchNorm regime of every row")
    p.add_argument("--lc-modes", nargs="+", default=list(ADAPTIVE_MODES),
                   help="the adaptive L_LC modes of claim 5 (losses.py)")
    p.add_argument("--outliers", default="matched", help="matched (default) or crops")
    p.add_argument("--pretrain-epochs", type=int, default=None)
    p.add_argument("--finetune-epochs", type=int, default=None)
    p.add_argument("--limit-batches", type=int, default=None)
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at a time (one thread each)")
    p.add_argument("--max-runs", type=int, default=None,
                   help="train at most this many pending runs (in priority order), then evaluate")
    p.add_argument("--pilot", type=int, default=None, metavar="K",
                   help="train only the first K units' runs, then write the power analysis "
                        "(power.csv / power.md) beside the results")
    p.add_argument("--pilot-core-only", action="store_true",
                   help="the pilot trains only its units' core runs (claims 1, 2, 4); claims 3 "
                        "and 5 then keep their minimum units")
    p.add_argument("--evaluate-only", action="store_true",
                   help="train nothing; evaluate the finished runs and write the verdicts")
    p.add_argument("--detectors", nargs="+", default=[], metavar="D",
                   help="secondary rows of these post-hoc detectors (pytorch-ood; those that run "
                        "from features or logits, e.g. mahalanobis vim knn), in conventions ours "
                        "and openood, computed at evaluation from each checkpoint (records.py)")
    p.add_argument("--bn-table", action="store_true",
                   help="instead of the grid: each model under each BatchNorm regime (alpha 1, "
                        "seed 0), as trained and recalibrated, to bn_table.csv/.md")
    p.set_defaults(func=cmd_study)


def check_args(args) -> None:
    """Every bad value of ``lmoe-viz study`` as one line, before anything trains."""
    if args.preset not in PRESETS or PRESETS[args.preset].arch != "small":
        embedded = [n for n, p in PRESETS.items() if p.arch == "small"]
        raise UserError(f"the study runs on the embedded presets ({', '.join(embedded)}), "
                        f"not {args.preset!r}: pass --preset fashion-mnist or digits")
    bad = [a for a in args.alphas if not a > 0]
    if bad:
        raise UserError(f"--alphas must be > 0 (lambda ~ Beta(alpha, alpha)), got {bad[0]:g}; "
                        "pass e.g. --alphas 0.3 1 3")
    if 1.0 not in args.alphas:
        raise UserError(f"--alphas {' '.join(f'{a:g}' for a in args.alphas)} lacks 1, the alpha "
                        "of claims 1, 2, 4 and 5: add 1")
    unknown = [m for m in args.lc_modes if m not in LC_MODES or m == "fixed"]
    if unknown:
        raise UserError(f"unknown adaptive L_LC mode {unknown[0]!r}; choose among "
                        f"{', '.join(m for m in LC_MODES if m != 'fixed')}")
    if args.bn not in BN_REGIMES:
        raise UserError(f"unknown --bn {args.bn!r}; choose one of {', '.join(BN_REGIMES)}")
    if args.outliers not in OUTLIERS:
        raise UserError(f"unknown --outliers {args.outliers!r}; choose one of {', '.join(OUTLIERS)}")
    for name in ("pretrained_models", "units", "extra_units"):
        v = getattr(args, name)
        if v is not None and v < 2:
            raise UserError(f"--{name.replace('_', '-')} {v}: a test needs at least 2 pretrained "
                            "models and 2 units (its interval needs df >= 1); pass 2 or more")
    if args.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {args.jobs}")
    for name in args.detectors:
        if D.detector_spec(name).needs not in D.FROM_ARRAYS:
            raise UserError(f"--detectors {name}: it runs the network on every image of every "
                            "run; the study takes the detectors that run from features or logits "
                            f"({', '.join(n for n, d in D.DETECTORS.items() if d.needs in D.FROM_ARRAYS)})")
    if args.pilot is not None and args.pilot < 2:
        raise UserError(f"--pilot {args.pilot}: a power analysis needs at least 2 units; pass 2 or more")


def cmd_study(args) -> int:
    """``lmoe-viz study``: check the options, every cell, the data and the design; then train
    (``--max-runs``, ``--pilot``; nothing with ``--evaluate-only``), evaluate and write the
    verdicts, and after a pilot the power analysis; ``--bn-table`` writes the BatchNorm table
    instead. Returns 0."""
    check_args(args)
    study = Study(preset=args.preset, out=args.out, pretrained_models=args.pretrained_models,
                  units=args.units, extra_units=args.extra_units, alphas=tuple(args.alphas),
                  bn=args.bn, lc_modes=tuple(args.lc_modes), outliers=args.outliers,
                  pretrain_epochs=args.pretrain_epochs, finetune_epochs=args.finetune_epochs,
                  limit_batches=args.limit_batches, data_root=args.data_root, device=args.device)
    if study.extra_units > study.units:
        raise UserError(f"--extra-units {study.extra_units} exceeds --units {study.units}: the "
                        "extra runs are those of the first units; lower it")
    for cfg in study.cells():            # every cell valid before anything trains
        cfg.resolved()
    study.splits()                       # the data is there (one line if not) before training
    results = Path(args.results or Path(args.out) / "results")
    study.check_design(args.out, results, pilot=args.pilot is not None)
    if args.bn_table:
        print(f"study: {bn_table(study, results, jobs=args.jobs)}")
        return 0
    if not args.evaluate_only:
        print(study.run(jobs=args.jobs, log=lambda s: print(s, flush=True), max_runs=args.max_runs,
                        units=args.pilot, core_only=args.pilot_core_only, records=results / "records"))
    paths = study.evaluate(results, detectors=tuple(args.detectors))
    paths.update(write_claims(results, study.alphas, study.expected(), study.preset))
    if args.pilot is not None:
        paths.update(write_power(study, results))
    print(f"study: {paths}")
    return 0


def write_power(study: Study, results_dir) -> dict:
    """power.csv / power.md from the finished runs (a pilot)."""
    results_dir = Path(results_dir)
    df = power_analysis(pd.read_csv(results_dir / "results.csv"), pd.read_csv(results_dir / "norms.csv"),
                        study.alphas, study.preset,
                        units_per_model=max(1, study.units // study.pretrained_models))
    paths = {"power_csv": results_dir / "power.csv", "power_md": results_dir / "power.md"}
    atomic_write_text(paths["power_csv"], df.to_csv(index=False))
    atomic_write_text(paths["power_md"], power_markdown(df))
    return {k: str(v) for k, v in paths.items()}
