"""``lmoe-viz study``: the paper's claims 1-5 tested under a pre-registered plan
(claims.py analyses what it produces; power.py sizes it from a pilot).

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

import numpy as np
import pandas as pd

from .claims import ADAPTIVE_MODES, MIN_UNITS
from .config import RunConfig
from .errors import UserError
from .grid import PRETRAINED, Grid
from .io import atomic_write_text, file_sha256
from .machine import cpu_cores, cpu_model
from .methods import METHODS, MIXING, model_label
from .scores import SCORES
from .tables import _bn_label, to_markdown
from .train import finished

#: the sizes of a design that may grow after its pilot
SIZES = ("units", "extra_units", "pretrained_models")
#: the near-OOD set: the held-out classes' test images
NEAR = ("holdout", "heldout-classes", "ood_test")
#: the format of a run's record (module doc); a record of another format is refused
RECORD_FORMAT = 1


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
        pending = [c for c in cells if not _done(self.name_of(c), self.run_dir(c), records)]
        todo = pending[:max_runs]
        needed = {self.model_of(c.seed) for c in todo}
        pre = [(c.to_dict(), str(d)) for p, (c, d) in enumerate(self.pretrain_dirs())
               if not finished(d) and (p in needed or not _recorded(f"p{p}/{PRETRAINED}", records))]
        for name, seconds, error in _train_all(pre, jobs):
            log(f"{name} {'FAILED (' + error + ')' if error else 'in'} {seconds:.0f} s")
            if records is not None and not error:
                self._record_pretrained(name, records, log)
        log(f"study {self.preset}: {len(cells) - len(pending)} of {len(cells)} runs finished, "
            f"{len(pending)} to train; training {len(todo)} now ({jobs} at a time)")
        done, failed = 0, []
        for name, seconds, error in _train_all([(c.to_dict(), str(self.run_dir(c))) for c in todo], jobs):
            done += 1
            if error:
                failed.append(name)
            elif records is not None:
                self.write_record(name, records)
            log(f"[{done}/{len(todo)}] {name} {'FAILED (' + error + ')' if error else 'in'} "
                f"{seconds:.0f} s ({(time.time() - t0) / 60:.1f} min so far)")
        n_finished = sum(_done(self.name_of(c), self.run_dir(c), records) for c in cells)
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
        from .data.protocols import far_part
        if getattr(self, "_eval_sets", None) is None:
            self._eval_sets = [NEAR] + [("far", s, far_part(s)) for s in self.far_sets()]
        return self._eval_sets

    def record(self, name: str, run: Path, device: str = "cpu") -> dict:
        """The record of one finished run (module doc): its results and norm rows."""
        from .extract import extract
        sets = self.eval_sets()
        logits, meta = extract(run / "checkpoint.pt", parts=("id_test",) + tuple(p for *_, p in sets),
                               data_root=self.data_root, device=device, with_meta=True,
                               splits=self.splits)
        config = meta["config"]
        init = None
        if not METHODS[config["method"]].pretrains:
            init = self.runs_dir / name.split("/")[0] / PRETRAINED / "checkpoint.pt"
        return {"format": RECORD_FORMAT, "run": name, "sets": [list(s) for s in sets],
                "checkpoint_sha256": file_sha256(run / "checkpoint.pt"),
                "init_sha256": file_sha256(init) if init is not None and init.is_file() else None,
                "recorded_on": f"{cpu_model()}, {cpu_cores()} cores",
                "rows": [r for protocol, ood_set, part in sets
                         for r in _rows(name, config, protocol, ood_set, logits["id_test"], logits[part])],
                "norms": _norm_row(name, config, logits, sets)}

    def write_record(self, name: str, records, device: str = "cpu") -> dict:
        """Compute a finished run's record and write it (unchanged content is not rewritten)."""
        rec = self.record(name, self.runs_dir / name, device)
        path = _record_path(name, records)
        text = json.dumps(rec, indent=1, default=_plain) + "\n"
        if not (path.is_file() and path.read_text() == text):
            atomic_write_text(path, text)
        return rec

    def read_record(self, name: str, records) -> dict | None:
        """A committed record, checked against this evaluation; None when there is none."""
        path = _record_path(name, records)
        if not path.is_file():
            return None
        rec = json.loads(path.read_text())
        if rec.get("format") != RECORD_FORMAT:
            raise UserError(f"{path} is a record of format {rec.get('format')!r}, this version reads "
                            f"{RECORD_FORMAT}: evaluate it where its checkpoint is, or retrain the run")
        sets = [list(s) for s in self.eval_sets()]
        if rec["sets"] != sets:
            raise UserError(f"{path} was evaluated on the OOD sets {[s[1] for s in rec['sets']]}, "
                            f"here they are {[s[1] for s in sets]}: install the same data "
                            "(make fashion-data) or evaluate where its checkpoint is")
        return rec

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
        from .data.protocols import FAR_SETS, far_dataset
        keep = []
        for name in FAR_SETS.get(self.preset, ()):
            try:
                far_dataset(name, self.splits(), self.grid().pretrain_config().resolved())
                keep.append(name)
            except UserError:
                pass
        return keep

    def evaluate(self, results_dir, device: str = "cpu") -> dict:
        """results.csv, norms.csv and shortcut.csv (module doc) for the finished runs: from
        each run's checkpoint where it is here (its record written or refreshed in
        ``results_dir/records``), from its committed record otherwise."""
        results_dir = Path(results_dir)
        records = results_dir / "records"
        rows, norms = [], []
        for name, run in self.runs():
            rec = self.write_record(name, records, device) if finished(run) else \
                self.read_record(name, records)
            if rec is not None:
                rows += rec["rows"]
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
            from .data import build_splits
            self._splits = build_splits(self.grid().pretrain_config().resolved())
        return self._splits


def shortcut_check(study: Study) -> pd.DataFrame:
    """Can pixels alone tell ID training images from the training outliers? Each detector
    of pixelstats.py, for the outliers of both kinds (``crops`` before, ``matched`` now)."""
    from .data import build_splits
    from .pixelstats import SHORTCUT_MAX, detector_aurocs, raw_images
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
    from .data.protocols import part_dataset
    from .pixelstats import detector_aurocs, raw_images
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


#: the models of the BatchNorm table, each trained under every regime
BN_TABLE_MODELS = (("oe", False),) + tuple((m, lc) for m in MIXING for lc in (False, True))


def bn_table_cells(study: Study, alpha: float = 1.0, seed: int = 0) -> list[RunConfig]:
    """Each model of ``BN_TABLE_MODELS`` under each regime (alpha 1, seed 0 by default),
    from the study's first pretrained model (the study's own runs are reused)."""
    from .batchnorm import BN_REGIMES
    return [study.grid(0, bn).finetune_config(m, seed, lc, alpha)
            for bn in BN_REGIMES for m, lc in BN_TABLE_MODELS]


def bn_table(study: Study, results_dir, jobs: int = 1, alpha: float = 1.0, seed: int = 0,
             device: str = "cpu", log=print) -> dict:
    """Train what the BatchNorm table needs, then write ``bn_table.csv`` / ``.md``: each
    model x regime, accuracy / AUROC / FPR95 (holdout, MSP), as trained and with BatchNorm
    recalibrated on ID training data (the diagnostic of how much is BatchNorm)."""
    from .extract import extract
    from .metrics import accuracy, metrics_by_convention
    from .scores import msp
    from .train import train
    cfg0, dir0 = study.pretrain_dirs()[0]
    train(cfg0, dir0, progress=False)
    cells = bn_table_cells(study, alpha, seed)
    todo = [c for c in cells if not finished(study.run_dir(c))]
    for name, seconds, error in _train_all([(c.to_dict(), str(study.run_dir(c))) for c in todo], jobs):
        log(f"bn table: {name} {'FAILED (' + error + ')' if error else 'in'} {seconds:.0f} s")
    missing = [study.run_dir(c).name for c in cells if not finished(study.run_dir(c))]
    if missing:
        raise UserError(f"the BatchNorm table misses {len(missing)} run(s) ({', '.join(missing)}); "
                        "see the log above and rerun --bn-table")
    rows = []
    for cfg in cells:
        run = study.run_dir(cfg)
        row = {"model": model_label(cfg.method, cfg.lc), "bn": cfg.bn, "alpha": alpha, "seed": seed}
        for recal in (False, True):
            lg = extract(run / "checkpoint.pt", parts=("id_test", "ood_test"), data_root=study.data_root,
                         device=device, recalibrate_bn=recal, splits=study.splits)
            m = metrics_by_convention(msp(lg["id_test"]["logits"]), msp(lg["ood_test"]["logits"]), "ours")
            tag = "_recal" if recal else ""
            row.update({f"accuracy{tag}": accuracy(lg["id_test"]["logits"], lg["id_test"]["labels"]),
                        f"auroc{tag}": m["auroc"], f"fpr95{tag}": m["fpr95"]})
        rows.append(row)
    df = pd.DataFrame(rows)
    results_dir = Path(results_dir)
    paths = {"bn_csv": results_dir / "bn_table.csv", "bn_md": results_dir / "bn_table.md"}
    atomic_write_text(paths["bn_csv"], df.to_csv(index=False))
    shown = pd.DataFrame({"model": df["model"], "--bn": df["bn"]})
    for tag, name in (("", "as trained"), ("_recal", "BN recalibrated")):
        shown[f"Acc. % ({name})"] = df[f"accuracy{tag}"].map("{:.2f}".format)
        shown[f"AUROC % ({name})"] = (100 * df[f"auroc{tag}"]).map("{:.2f}".format)
        shown[f"FPR95 % ({name})"] = (100 * df[f"fpr95{tag}"]).map("{:.2f}".format)
    atomic_write_text(paths["bn_md"], f"Preset {study.preset}, alpha {alpha:g}, seed {seed}, "
                      f"outliers {study.outliers}, holdout protocol, MSP; one seed: differences "
                      "below about a point are within seed noise.\n\n" + to_markdown(shown))
    return {k: str(v) for k, v in paths.items()}


def _record_path(name: str, records) -> Path:
    return Path(records) / f"{name}.json"


def _recorded(name: str, records) -> bool:
    return records is not None and _record_path(name, records).is_file()


def _done(name: str, run: Path, records) -> bool:
    """Finished here (its checkpoint) or recorded (another machine trained it)."""
    return finished(run) or _recorded(name, records)


def _plain(v):
    """numpy scalars in a record as Python numbers."""
    return v.item() if isinstance(v, np.generic) else str(v)


def _describe(name: str, c: dict) -> dict:
    mixing = METHODS[c["method"]].mixes
    lc_mode = c.get("lc_mode", "fixed") if c["lc"] else ""
    return {"run": name, "method": c["method"], "lc": bool(c["lc"]), "lc_mode": lc_mode,
            "variant": ("lc-" + (lc_mode or "fixed")) if c["lc"] else "no-lc",
            "alpha": c["alpha"] if mixing else np.nan, "seed": c["seed"],
            "pretrain_seed": _pretrain_seed(name, c), "split": c["split"], "bn": _bn_label(c),
            "outliers": c.get("outliers", "crops"), "channels_last": bool(c.get("channels_last")),
            "model": model_label(c["method"], c["lc"], c.get("lc_mode", "fixed"))}


def _pretrain_seed(name: str, c: dict) -> int:
    """The pretraining seed of a run: its own seed for a pretraining, else its folder's."""
    return int(c["seed"]) if METHODS[c["method"]].pretrains else int(name.split("/")[0][1:])


def _rows(name: str, config: dict, protocol: str, ood_set: str, idt: dict, ood: dict) -> list:
    """The results rows of one run against one OOD set: every score in convention
    ``ours``, and MSP in ``mixoe`` (MixOE's calculate_log, metrics.py) too."""
    from .metrics import accuracy, metrics_by_convention
    from .scores import score as score_fn
    base = {**_describe(name, config), "protocol": protocol, "ood_set": ood_set,
            "accuracy": accuracy(idt["logits"], idt["labels"]), "n_id": int(len(idt["labels"])),
            "n_ood": int(len(ood["labels"]))}
    rows = []
    for score, convention in [(s, "ours") for s in SCORES] + [("msp", "mixoe")]:
        m = metrics_by_convention(score_fn(score, idt["logits"]), score_fn(score, ood["logits"]),
                                  convention)
        rows.append({**base, "score": score, "metric_convention": convention,
                     "auroc": m["auroc"], "fpr95": m["fpr95"]})
    return rows


#: quantiles of the logit norm stored per run and part (claim 2, figures)
NORM_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
#: the OOD parts whose norm histograms are stored (figures): near, and far photographs
HIST_PARTS = ("id", "ood", "far_photos_heldout")


def _norm_row(name: str, config: dict, logits: dict, sets) -> dict:
    """Mean, quantiles (and for HIST_PARTS a histogram on NORM_BINS) of ||z|| of the ID
    test images (``id``), the held-out classes (``ood``) and each far-OOD set
    (``far_<set>``, dashes as underscores)."""
    row = _describe(name, config)
    keyed = [("id_test", "id")] + [(part, "ood" if protocol == "holdout" else
                                    "far_" + ood_set.replace("-", "_"))
                                   for protocol, ood_set, part in sets]
    for part, key in keyed:
        n = np.linalg.norm(logits[part]["logits"].astype(np.float64), axis=1)
        row[f"{key}_norm_mean"] = float(n.mean())
        for q in NORM_QUANTILES:
            row[f"{key}_norm_q{int(q * 100):02d}"] = float(np.quantile(n, q))
        if key in HIST_PARTS:
            clipped = np.clip(n, NORM_BINS[0], NORM_BINS[-1])
            row[f"{key}_norm_hist"] = " ".join(str(int(v)) for v in
                                               np.histogram(clipped, bins=NORM_BINS)[0])
    return row


#: bins of the stored logit-norm histograms: 0, then 20 geometric bins per decade from
#: 0.01 to 1000, so that any scale of logits is resolved (norms beyond are clipped)
NORM_BINS = np.append(0.0, np.geomspace(0.01, 1000.0, 101))


def _train_one(cfg_dict: dict, out_dir: str, threads: int) -> tuple[str, float, str | None]:
    """Train one run; (name, seconds, error line or None): one failed run does not stop
    the others (rerun the study to retry it)."""
    import torch

    from .jobs import train_job
    if threads:
        torch.set_num_threads(threads)
    t0 = time.time()
    try:
        train_job(cfg_dict, out_dir)
        error = None
    except Exception as exc:  # noqa: BLE001 - reported per run, the study goes on
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return f"{Path(out_dir).parent.name}/{Path(out_dir).name}", time.time() - t0, error


def _train_all(tasks: list, jobs: int):
    """Yield (run name, seconds, error) as runs finish; ``jobs`` processes of one thread each."""
    if jobs <= 1:
        for cfg, out in tasks:
            yield _train_one(cfg, out, 0)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_train_one, cfg, out, 1) for cfg, out in tasks]
        for f in as_completed(futures):
            yield f.result()


def add_parser(sub) -> None:
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
    p.add_argument("--bn-table", action="store_true",
                   help="instead of the grid: each model under each BatchNorm regime (alpha 1, "
                        "seed 0), as trained and recalibrated, to bn_table.csv/.md")
    p.set_defaults(func=cmd_study)


def check_args(args) -> None:
    """Every bad value of ``lmoe-viz study`` as one line, before anything trains."""
    from .batchnorm import BN_REGIMES
    from .config import OUTLIERS
    from .data.presets import PRESETS
    from .losses import LC_MODES
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
    if args.pilot is not None and args.pilot < 2:
        raise UserError(f"--pilot {args.pilot}: a power analysis needs at least 2 units; pass 2 or more")


def cmd_study(args) -> int:
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
    from .claims import write_claims
    paths = study.evaluate(results)
    paths.update(write_claims(results, study.alphas, study.expected(), study.preset))
    if args.pilot is not None:
        paths.update(write_power(study, results))
    print(f"study: {paths}")
    return 0


def write_power(study: Study, results_dir) -> dict:
    """power.csv / power.md from the finished runs (a pilot)."""
    from .power import power_analysis, power_markdown
    results_dir = Path(results_dir)
    df = power_analysis(pd.read_csv(results_dir / "results.csv"), pd.read_csv(results_dir / "norms.csv"),
                        study.alphas, study.preset,
                        units_per_model=max(1, study.units // study.pretrained_models))
    paths = {"power_csv": results_dir / "power.csv", "power_md": results_dir / "power.md"}
    atomic_write_text(paths["power_csv"], df.to_csv(index=False))
    atomic_write_text(paths["power_md"], power_markdown(df))
    return {k: str(v) for k, v in paths.items()}
