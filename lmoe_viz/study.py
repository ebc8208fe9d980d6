"""The claims study: the paper's claims 1-5 tested under a pre-registered plan: its
design, its training in priority order and its evaluation into tables (claims.py analyses
what it produces; power.py sizes it from a pilot; studycmd.py is ``lmoe-viz study``;
records.py what is kept of each run; bntable.py the BatchNorm table).

The design. ``pretrained_models`` = P pretrained models (pretraining seeds 0..P-1) and
``units`` unit = (pretrained model, fine-tuning seed) pairs: unit ``u`` fine-tunes
pretrained model ``u mod P`` with seed ``u``, so seeds are nested in pretrained models.
Every unit trains, all under one BatchNorm regime (``bn``, ``id-stats``) and one kind of
outliers (``outliers``, ``matched``: no intensity shortcut, data/outliers.py):

* core (claims 1, 2, 4 and the controls): the CE fine-tune (``ce``: same pretrained model,
  same schedule, no outliers), OE, and MixOE and Logit MixOE without / with L_LC at
  alpha 1: 6 runs;
* extra, for the first ``extra_units`` units (claims 3 and 5): MixOE and Logit MixOE
  without / with L_LC at every other alpha of ``alphas``, and with each adaptive L_LC
  (``lc_modes``) at alpha 1: 14 runs with the default grid.

Runs are ordinary grid cells (grid.Grid), one ``runs/p<k>/`` folder per pretrained
model, so they are resumable, cached and named as every other run. They train in priority
order: every unit's core runs (unit 0 first), then the extra runs; a sitting stopped early
holds complete units. ``jobs`` > 1 trains that many runs at a time, one thread each.
``design.json`` records the design in the output and results folders; a folder of
another design is refused.

Records: each finished run's evaluation (its ``results.csv`` rows, its ``norms.csv`` row,
the sha256 of its checkpoint and of the pretrained model it started from, the machine that
wrote it) is one small JSON file, ``<results>/records/p<k>/<run>.json``, written as the run
finishes. Committed with the results, the records let a study continue on another machine
(checkpoints are not committed): a recorded run counts as finished and is not trained
again, and ``evaluate`` takes a run's rows from its checkpoint when it is here, from its
record otherwise. A pretrained model that is missing here is trained again only when a
pending run needs it; from the same seed on another CPU its weights may differ in the last
digits (the record's sha says which copy each run started from); units stay nested in
their pretraining seed.

``evaluate`` writes, for every finished run, one row per (protocol, OOD set, score, metric
convention) to ``results.csv``: ``holdout`` / ``heldout-classes`` (near-OOD) and ``far`` /
each named far-OOD set (data/protocols.FAR_SETS, none a source of training outliers); the
pixel-statistics references (pixelstats.py) as rows of method ``reference``; the logit
norms of the ID test images and of each OOD set per run to ``norms.csv``; and the shortcut
check (ID training images vs the training outliers, both kinds) to ``shortcut.csv``.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pandas as pd

from . import records as R
from .claims import ADAPTIVE_MODES, MIN_UNITS
from .config import RunConfig
from .data import build_splits
from .data.protocols import FAR_SETS, far_dataset, far_part, part_dataset
from .detectors import detector_spec
from .errors import UserError
from .evaluation import FIT_PART, detector_scores
from .extract import extract
from .grid import PRETRAINED, Grid
from .io import atomic_write_text
from .jobs import train_local
from .methods import METHODS, MIXING
from .models import load_checkpoint
from .pixelstats import SHORTCUT_MAX, detector_aurocs, raw_images
from .records import NORM_BINS
from .tables import to_markdown
from .train import finished

#: NORM_BINS: read here by notebook 07 and the claims figures' tests
__all__ = ["Study", "NORM_BINS", "NEAR", "SIZES", "shortcut_check", "shortcut_markdown",
           "reference_rows"]

#: the sizes of a design that may grow after its pilot
SIZES = ("units", "extra_units", "pretrained_models")
#: the near-OOD set: the held-out classes' test images
NEAR = ("holdout", "heldout-classes", "ood_test")


@dataclasses.dataclass
class Study:
    preset: str = "fashion-mnist"
    out: str = "out/study/fashion-mnist"
    pretrained_models: int = 5
    units: int | None = None          # core units (None: claims.MIN_UNITS of the preset)
    extra_units: int | None = None    # units with the alpha grid and adaptive L_LC
    alphas: tuple = (0.3, 1.0, 3.0)
    bn: str = "id-stats"
    lc_modes: tuple = ADAPTIVE_MODES
    outliers: str = "matched"
    pretrain_epochs: int | None = None
    finetune_epochs: int | None = None
    limit_batches: int | None = None
    data_root: str | None = None
    device: str = "auto"

    def __post_init__(self):
        mins = MIN_UNITS.get(self.preset, {"core": 10, "extra": 5})
        if self.units is None:
            self.units = mins["core"]
        if self.extra_units is None:
            self.extra_units = min(mins["extra"], self.units)

    @property
    def runs_dir(self) -> Path:
        return Path(self.out) / "runs"

    def model_of(self, unit: int) -> int:
        return unit % self.pretrained_models

    def grid(self, model: int = 0, bn: str | None = None) -> Grid:
        return Grid(preset=self.preset, runs_dir=str(self.runs_dir / f"p{model}"), methods=MIXING,
                    lcs=(False, True), alphas=tuple(self.alphas), seeds=(),
                    pretrain_epochs=self.pretrain_epochs, finetune_epochs=self.finetune_epochs,
                    data_root=self.data_root, device=self.device, limit_batches=self.limit_batches,
                    bn=bn or self.bn, lc_modes=("fixed",), outliers=self.outliers,
                    pretrain_seed=model, channels_last=True)

    def design(self) -> dict:
        """What the verdicts rest on; a results folder of another design is refused."""
        return {"preset": self.preset, "pretrained_models": self.pretrained_models,
                "units": self.units, "extra_units": self.extra_units,
                "alphas": [float(a) for a in self.alphas], "lc_modes": list(self.lc_modes),
                "bn": self.bn, "outliers": self.outliers, "pretrain_epochs": self.pretrain_epochs,
                "finetune_epochs": self.finetune_epochs, "limit_batches": self.limit_batches}

    def expected(self) -> dict:
        """Units of each tier of the design (claims.primary_verdicts)."""
        return {"core": self.units, "extra": self.extra_units}

    def unit_cells(self, unit: int, tier: str) -> list[RunConfig]:
        g, seed = self.grid(self.model_of(unit)), unit
        if tier == "core":
            return ([g.finetune_config("ce", seed), g.finetune_config("oe", seed)]
                    + [g.finetune_config(m, seed, lc, 1.0) for m in MIXING for lc in (False, True)])
        return ([g.finetune_config(m, seed, lc, a) for a in self.alphas if a != 1.0
                 for m in MIXING for lc in (False, True)]
                + [g.finetune_config(m, seed, True, 1.0, mode) for mode in self.lc_modes
                   for m in MIXING])

    def cells(self, units: int | None = None, core_only: bool = False) -> list[RunConfig]:
        """Every fine-tuning run, in priority order (module doc); with ``units`` only those
        of the first ``units`` units (a pilot), with ``core_only`` only their core runs."""
        core = [c for u in range(self.units if units is None else min(units, self.units))
                for c in self.unit_cells(u, "core")]
        n_extra = 0 if core_only else (self.extra_units if units is None else min(units, self.extra_units))
        return core + [c for u in range(n_extra) for c in self.unit_cells(u, "extra")]

    def pretrain_dirs(self) -> list[tuple[RunConfig, Path]]:
        return [(self.grid(p).pretrain_config(), self.runs_dir / f"p{p}" / PRETRAINED)
                for p in range(min(self.pretrained_models, self.units))]

    def run_dir(self, cfg: RunConfig) -> Path:
        return self.grid(self.model_of(cfg.seed)).run_dir(cfg)

    def name_of(self, cfg: RunConfig) -> str:
        """A run's name in the study: ``p<k>/<run folder>``."""
        return f"p{self.model_of(cfg.seed)}/{self.run_dir(cfg).name}"

    def check_design(self, *folders, pilot: bool = False) -> None:
        """Refuse a folder that holds another design's ``design.json``; record ours. A
        pilot's design may grow (more units, extra units, pretrained models: the sizes the
        power analysis sets); its runs keep their names, so they are reused."""
        mine = {**self.design(), "stage": "pilot" if pilot else "full"}
        for folder in folders:
            f = Path(folder) / "design.json"
            if f.is_file():
                theirs = json.loads(f.read_text())
                grows = theirs.get("stage") == "pilot"
                diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k)
                              and not (grows and (k == "stage" or (k in SIZES and mine[k] >= theirs[k]))))
                if diff:
                    raise UserError(f"{folder} holds a study of another design ({', '.join(f'{k}: {theirs.get(k)!r} here, {mine.get(k)!r} asked' for k in diff)}); "
                                    "pass the same options, or another --out / --results")
        for folder in folders:
            atomic_write_text(Path(folder) / "design.json", json.dumps(mine, indent=1) + "\n")

    def run(self, jobs: int = 1, log=print, max_runs: int | None = None,
            units: int | None = None, core_only: bool = False, records=None) -> dict:
        """Train the pretrained models that are needed, then every unfinished cell (``jobs``
        at a time; the first ``max_runs`` in priority order when given; only the first
        ``units`` units' cells when given). With ``records`` (a folder), a recorded run
        counts as finished and each run writes its record there as it finishes."""
        t0 = time.time()
        cells = self.cells(units, core_only)
        pending = [c for c in cells if not R.done(self.name_of(c), self.run_dir(c), records)]
        todo = pending[:max_runs]
        needed = {self.model_of(c.seed) for c in todo}
        pre = [(c.to_dict(), str(d)) for p, (c, d) in enumerate(self.pretrain_dirs())
               if not finished(d) and (p in needed or not R.recorded(f"p{p}/{PRETRAINED}", records))]
        for name, seconds, error in train_local(pre, jobs):
            log(f"{name} {'FAILED (' + error + ')' if error else 'in'} {seconds:.0f} s")
            if records is not None and not error:
                self._record_pretrained(name, records, log)
        log(f"study {self.preset}: {len(cells) - len(pending)} of {len(cells)} runs finished, "
            f"{len(pending)} to train; training {len(todo)} now ({jobs} at a time)")
        done, failed = 0, []
        for name, seconds, error in train_local([(c.to_dict(), str(self.run_dir(c))) for c in todo], jobs):
            done += 1
            if error:
                failed.append(name)
            elif records is not None:
                self.write_record(name, records)
            log(f"[{done}/{len(todo)}] {name} {'FAILED (' + error + ')' if error else 'in'} "
                f"{seconds:.0f} s ({(time.time() - t0) / 60:.1f} min so far)")
        n_finished = sum(R.done(self.name_of(c), self.run_dir(c), records) for c in cells)
        log(f"study {self.preset}: {n_finished} of {len(cells)} runs finished")
        return {"trained": done - len(failed), "failed": failed, "finished": n_finished,
                "planned": len(cells), "seconds": round(time.time() - t0, 1)}

    def runs(self) -> list[tuple[str, Path]]:
        """(name, folder) of every run of the design, pretrained models first."""
        out = [(f"p{p}/{PRETRAINED}", d) for p, (_, d) in enumerate(self.pretrain_dirs())]
        return out + [(self.name_of(c), self.run_dir(c)) for c in self.cells()]

    def eval_sets(self) -> list[tuple[str, str, str]]:
        """(protocol, OOD set, part) of every OOD test set: near, then each far set that can
        be built here (found once)."""
        if getattr(self, "_eval_sets", None) is None:
            self._eval_sets = [NEAR] + [("far", s, far_part(s)) for s in self.far_sets()]
        return self._eval_sets

    def record(self, name: str, run: Path, device: str = "cpu", detectors=()) -> dict:
        """The record of one finished run (records.py): its results and norm rows, and the
        secondary rows of ``detectors`` (post-hoc detectors from the arrays, fitted on the
        un-augmented ID training images; evaluation.detector_scores, cached in the run)."""
        sets = self.eval_sets()
        parts = ("id_test",) + tuple(p for *_, p in sets)
        ckpt = run / "checkpoint.pt"
        loaded = load_checkpoint(ckpt)                  # read once for every extraction
        kw = dict(data_root=self.data_root, device=device, splits=self.splits, loaded=loaded)
        logits, meta = extract(ckpt, parts=parts, with_meta=True, **kw)
        if any(detector_spec(d).fit for d in detectors):    # cached apart: the test parts
            logits = {**logits, **extract(ckpt, parts=(FIT_PART,), **kw)}   # stay the evaluation's
        config = meta["config"]
        init = None
        if not METHODS[config["method"]].pretrains:
            init = self.runs_dir / name.split("/")[0] / PRETRAINED / "checkpoint.pt"
        scores = None
        if detectors:
            scores = {d: detector_scores(ckpt, loaded, d, logits, parts, run / "logits",
                                         data_root=self.data_root, device=device)
                      for d in detectors}
        return R.make_record(name, config, logits, sets, ckpt, init, scores)

    def write_record(self, name: str, records, device: str = "cpu", detectors=()) -> dict:
        """Compute a finished run's record and write it (unchanged content is not rewritten;
        without ``detectors``, the secondary rows of its record of the same checkpoint are
        kept, records.keep_extra)."""
        new = self.record(name, self.runs_dir / name, device, detectors)
        old = None
        if not detectors:
            try:
                old = self.read_record(name, records)
            except UserError:              # another format or other sets: rewritten whole
                old = None
        return R.store(R.keep_extra(new, old), records)

    def read_record(self, name: str, records) -> dict | None:
        """A committed record, checked against this evaluation; None when there is none."""
        return R.load(name, records, self.eval_sets())

    def _record_pretrained(self, name: str, records, log) -> None:
        """Record a pretrained model trained now; say so when a recorded copy differs."""
        old = self.read_record(name, records)
        new = self.write_record(name, records)
        if old is not None and old["checkpoint_sha256"] != new["checkpoint_sha256"]:
            log(f"{name}: trained again here ({new['recorded_on']}); its weights differ from the "
                f"recorded copy ({old['recorded_on']}), so the runs trained now start from "
                f"sha256 {new['checkpoint_sha256'][:12]}, the recorded ones from "
                f"{old['checkpoint_sha256'][:12]} (each record's init_sha256)")

    def far_sets(self) -> list[str]:
        """The preset's far-OOD sets that can be built here (fashion-8 needs Fashion-MNIST)."""
        keep = []
        for name in FAR_SETS.get(self.preset, ()):
            try:
                far_dataset(name, self.splits(), self.grid().pretrain_config().resolved())
                keep.append(name)
            except UserError:
                pass
        return keep

    def evaluate(self, results_dir, device: str = "cpu", detectors=()) -> dict:
        """results.csv, norms.csv and shortcut.csv (module doc) for the finished runs: from
        each run's checkpoint where it is here (its record written or refreshed in
        ``results_dir/records``, with the secondary rows of ``detectors``), from its
        committed record otherwise."""
        results_dir = Path(results_dir)
        records = results_dir / "records"
        rows, norms = [], []
        for name, run in self.runs():
            rec = self.write_record(name, records, device, detectors) if finished(run) else \
                self.read_record(name, records)
            if rec is not None:
                rows += R.rows_of(rec)
                norms.append(rec["norms"])
        sets = self.eval_sets()
        rows += reference_rows(self.splits(), self.grid().pretrain_config().resolved(), sets)
        paths = {"results": results_dir / "results.csv", "norms": results_dir / "norms.csv",
                 "shortcut": results_dir / "shortcut.csv", "shortcut_md": results_dir / "shortcut.md"}
        table = pd.DataFrame(rows)
        for col in ("seed", "pretrain_seed", "split"):      # integers, empty for the references
            table[col] = table[col].astype("Int64")
        atomic_write_text(paths["results"], table.to_csv(index=False))
        atomic_write_text(paths["norms"], pd.DataFrame(norms).to_csv(index=False))
        check = shortcut_check(self)
        atomic_write_text(paths["shortcut"], check.to_csv(index=False))
        atomic_write_text(paths["shortcut_md"], shortcut_markdown(check, pd.DataFrame(rows)))
        return {k: str(v) for k, v in paths.items()}

    def splits(self):
        """The study's data, built once (every run shares preset, split and outliers)."""
        if getattr(self, "_splits", None) is None:
            self._splits = build_splits(self.grid().pretrain_config().resolved())
        return self._splits


def shortcut_check(study: Study) -> pd.DataFrame:
    """Can pixels alone tell ID training images from the training outliers? Each detector
    of pixelstats.py, for the outliers of both kinds (``crops`` before, ``matched`` now)."""
    rows = []
    for kind in ("crops", "matched"):
        cfg = dataclasses.replace(study.grid().pretrain_config(), outliers=kind).resolved()
        sp = study.splits() if kind == study.outliers else build_splits(cfg)
        for det, auc in detector_aurocs(raw_images(sp.id_train, sp), raw_images(sp.aux, sp)).items():
            rows.append({"preset": study.preset, "outliers": kind,
                         "comparison": "ID train vs training outliers", "detector": det,
                         "auroc": auc, "n_id": len(sp.id_train), "n_outliers": len(sp.aux),
                         "passes": bool(auc <= SHORTCUT_MAX) if det != "small-cnn" else ""})
    return pd.DataFrame(rows)


def shortcut_markdown(check: pd.DataFrame, results: pd.DataFrame) -> str:
    """The shortcut check (ID train vs training outliers, each detector and kind of
    outliers), then the pixel references beside the models (MSP, mean over runs) per OOD set."""
    wide = check.pivot_table(index="outliers", columns="detector", values="auroc").round(3)
    out = ("AUROC of telling ID training images from the training outliers (pixel-stats must "
           "stay <= 0.75):\n\n" + to_markdown(wide.reset_index()))
    refs = results[results["method"] == "reference"]
    trained = results[(results["method"] != "reference") & (results["score"] == "msp")
                      & (results["metric_convention"] == "ours")]
    if len(refs) and len(trained):
        t = refs.pivot_table(index="ood_set", columns="score", values="auroc")
        t = t.join(trained.groupby(["ood_set", "model"])["auroc"].mean().unstack("model"))
        n = trained.groupby("ood_set")["run"].nunique()
        t.insert(0, "runs", n)
        out += ("\n\nAUROC against each OOD set: the pixel references (fitted on the test "
                "set's own folds: an upper reference) beside the models (MSP, mean over their "
                "runs):\n\n" + to_markdown(t.round(3).reset_index()))
    return out + "\n"


def reference_rows(splits, cfg, sets) -> list[dict]:
    """The pixel-statistics detectors against every OOD test set (method ``reference``)."""
    idt = raw_images(splits.id_test, splits)
    rows = []
    for protocol, ood_set, part in sets:
        ood = raw_images(part_dataset(part, splits, cfg), splits)
        for det, auc in detector_aurocs(idt, ood, ("pixel-stats", "background")).items():
            rows.append({"run": f"reference:{det}", "method": "reference", "model": det,
                         "protocol": protocol, "ood_set": ood_set, "score": det,
                         "metric_convention": "ours", "auroc": auc, "n_id": len(idt),
                         "n_ood": len(ood), "outliers": cfg.outliers})
    return rows


