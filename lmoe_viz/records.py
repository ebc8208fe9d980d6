"""What the study keeps of one finished run: its rows of ``results.csv`` and ``norms.csv``,
and the record file that carries them to another machine (study.py's module doc).

A record is ``<results>/records/p<k>/<run>.json``: the format (``RECORD_FORMAT``), the run's
name, the OOD sets it was evaluated on, the sha256 of its checkpoint and of the pretrained
model it started from, the machine that wrote it, its results rows (every score in
convention ``ours``, MSP in ``mixoe`` too, metrics.metrics_row) and its norm row (mean,
quantiles and histograms of the logit norm ||z||). A record of another format, or of other
OOD sets, is refused in one line.

Secondary rows of post-hoc detectors (``lmoe-viz study ... --detectors mahalanobis vim``,
issue 17): a record may also hold ``extra``: the detectors asked for and their rows (each
detector in conventions ``ours`` and ``openood``, and MSP in ``openood``), computed from the
checkpoint (detectors fitted on the un-augmented ID training images, evaluation.py). They
are optional, so a record without them is unchanged; an evaluation without
``--detectors`` keeps those of a record of the same checkpoint (``keep_extra``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import UserError
from .io import atomic_write_text, file_sha256
from .machine import cpu_cores, cpu_model
from .methods import METHODS, model_label
from .metrics import metrics_row
from .scores import SCORES
from .tables import _bn_label
from .train import finished

#: the format of a run's record (module doc); a record of another format is refused
RECORD_FORMAT = 1
#: quantiles of the logit norm stored per run and part (claim 2, figures)
NORM_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
#: the OOD parts whose norm histograms are stored (figures): near, and far photographs
HIST_PARTS = ("id", "ood", "far_photos_heldout")
#: bins of the stored logit-norm histograms: 0, then 20 geometric bins per decade from
#: 0.01 to 1000, so that any scale of logits is resolved (norms beyond are clipped)
NORM_BINS = np.append(0.0, np.geomspace(0.01, 1000.0, 101))
#: the (score, metric convention) pairs of a run's results rows
ROW_METRICS = tuple((s, "ours") for s in SCORES) + (("msp", "mixoe"),)
#: the conventions of the secondary detector rows (``extra``), and the logit score added
#: under the conventions ROW_METRICS lacks
EXTRA_CONVENTIONS = ("ours", "openood")
EXTRA_SCORES = ("msp",)


def make_record(name: str, config: dict, logits: dict, sets, checkpoint: Path,
                init: Path | None, detector_scores: dict | None = None) -> dict:
    """The record of run ``name`` (module doc) from its logits (``id_test`` and each set's
    part); ``init``: the pretrained model's checkpoint, None for a pretraining.
    ``detector_scores``: ``{detector: {part: scores}}``, the secondary detector rows
    (``extra``, module doc); None for none."""
    rec = {"format": RECORD_FORMAT, "run": name, "sets": [list(s) for s in sets],
            "checkpoint_sha256": file_sha256(checkpoint),
            "init_sha256": file_sha256(init) if init is not None and init.is_file() else None,
            "recorded_on": f"{cpu_model()}, {cpu_cores()} cores",
            "rows": [r for protocol, ood_set, part in sets
                     for r in results_rows(name, config, protocol, ood_set, logits["id_test"],
                                           logits[part])],
            "norms": norm_row(name, config, logits, sets)}
    if detector_scores:
        rec["extra"] = {"detectors": list(detector_scores),
                        "rows": [r for protocol, ood_set, part in sets
                                 for r in extra_rows(name, config, protocol, ood_set, logits,
                                                     part, detector_scores)]}
    return rec


def extra_rows(name: str, config: dict, protocol: str, ood_set: str, logits: dict, part: str,
               detector_scores: dict) -> list:
    """The secondary rows of one run against one OOD set (module doc): each detector of
    ``detector_scores`` under EXTRA_CONVENTIONS, then EXTRA_SCORES under those conventions
    ROW_METRICS lacks."""
    idt, ood = logits["id_test"], logits[part]
    pairs = [(d, c, (detector_scores[d]["id_test"], detector_scores[d][part]))
             for d in detector_scores for c in EXTRA_CONVENTIONS]
    pairs += [(s, c, None) for s in EXTRA_SCORES for c in EXTRA_CONVENTIONS
              if (s, c) not in ROW_METRICS]
    return [_row(name, config, protocol, ood_set, metrics_row(idt, ood, score, c, scores))
            for score, c, scores in pairs]


def keep_extra(new: dict, old: dict | None) -> dict:
    """``new`` with the secondary rows of ``old`` when it has none of its own and ``old``
    is a record of the same checkpoint (so an evaluation without ``--detectors`` keeps them)."""
    if "extra" not in new and old is not None and "extra" in old \
            and old.get("checkpoint_sha256") == new["checkpoint_sha256"]:
        new["extra"] = old["extra"]
    return new


def rows_of(rec: dict) -> list:
    """Every results row of a record: its rows, then its secondary detector rows."""
    return rec["rows"] + rec.get("extra", {}).get("rows", [])


def record_path(name: str, records) -> Path:
    """The record file of run ``name``: ``<records>/<name>.json``."""
    return Path(records) / f"{name}.json"


def recorded(name: str, records) -> bool:
    """Whether run ``name`` has a record file in ``records`` (False when ``records`` is None)."""
    return records is not None and record_path(name, records).is_file()


def done(name: str, run: Path, records) -> bool:
    """Finished here (its checkpoint) or recorded (another machine trained it)."""
    return finished(run) or recorded(name, records)


def store(rec: dict, records) -> dict:
    """Write a record (unchanged content is not rewritten, so its file keeps its time)."""
    path = record_path(rec["run"], records)
    text = json.dumps(rec, indent=1, default=_plain) + "\n"
    if not (path.is_file() and path.read_text() == text):
        atomic_write_text(path, text)
    return rec


def load(name: str, records, sets) -> dict | None:
    """A committed record, checked against this evaluation's OOD ``sets``; None when there
    is none."""
    path = record_path(name, records)
    if not path.is_file():
        return None
    rec = json.loads(path.read_text())
    if rec.get("format") != RECORD_FORMAT:
        raise UserError(f"{path} is a record of format {rec.get('format')!r}, this version reads "
                        f"{RECORD_FORMAT}: evaluate it where its checkpoint is, or retrain the run")
    sets = [list(s) for s in sets]
    if rec["sets"] != sets:
        raise UserError(f"{path} was evaluated on the OOD sets {[s[1] for s in rec['sets']]}, "
                        f"here they are {[s[1] for s in sets]}: install the same data "
                        "(make fashion-data) or evaluate where its checkpoint is")
    return rec


def _plain(v):
    """numpy scalars in a record as Python numbers."""
    return v.item() if isinstance(v, np.generic) else str(v)


def describe(name: str, c: dict) -> dict:
    """The columns that say which run a row belongs to (its config, its model's label)."""
    mixing = METHODS[c["method"]].mixes
    lc_mode = c.get("lc_mode", "fixed") if c["lc"] else ""
    return {"run": name, "method": c["method"], "lc": bool(c["lc"]), "lc_mode": lc_mode,
            "variant": ("lc-" + (lc_mode or "fixed")) if c["lc"] else "no-lc",
            "alpha": c["alpha"] if mixing else np.nan, "seed": c["seed"],
            "pretrain_seed": pretrain_seed(name, c), "split": c["split"], "bn": _bn_label(c),
            "outliers": c.get("outliers", "crops"), "channels_last": bool(c.get("channels_last")),
            "model": model_label(c["method"], c["lc"], c.get("lc_mode", "fixed"))}


def pretrain_seed(name: str, c: dict) -> int:
    """The pretraining seed of a run: its own seed for a pretraining, else its folder's."""
    return int(c["seed"]) if METHODS[c["method"]].pretrains else int(name.split("/")[0][1:])


def results_rows(name: str, config: dict, protocol: str, ood_set: str, idt: dict, ood: dict) -> list:
    """The results rows of one run against one OOD set: ``ROW_METRICS`` (every score in
    convention ``ours``, and MSP in ``mixoe``, MixOE's calculate_log), metrics.metrics_row."""
    return [_row(name, config, protocol, ood_set, metrics_row(idt, ood, score, convention))
            for score, convention in ROW_METRICS]


def _row(name: str, config: dict, protocol: str, ood_set: str, m: dict) -> dict:
    """One results row: the run's columns (``describe``), the set, and a metrics row's
    accuracy, counts, score, convention, AUROC and FPR95."""
    return {**describe(name, config), "protocol": protocol, "ood_set": ood_set,
            **{k: m[k] for k in ("accuracy", "n_id", "n_ood", "score", "metric_convention",
                                 "auroc", "fpr95")}}


def norm_row(name: str, config: dict, logits: dict, sets) -> dict:
    """Mean, quantiles (and for HIST_PARTS a histogram on NORM_BINS) of ||z|| of the ID
    test images (``id``), the held-out classes (``ood``) and each far-OOD set
    (``far_<set>``, dashes as underscores)."""
    row = describe(name, config)
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
