"""Evaluate a checkpoint under a named protocol, score and metric convention.

``evaluate_checkpoint`` extracts (and caches, extract.py) the logits of the protocol's ID
and OOD images (data/protocols.py), then computes accuracy on the ID images and the OOD
metrics of one score (scores.py) or post-hoc detector (detectors.py, pytorch-ood; fitted
on the un-augmented ID training images) under ``ours``, ``mixoe`` or ``openood``
(metrics.py). Every row says its protocol, score and metric convention, so tables never
mix them silently.
"""
from __future__ import annotations

from pathlib import Path

from . import detectors as D
from .config import RunConfig
from .data import build_splits
from .data.protocols import (PROTOCOLS, SSB_PROTOCOLS, inputs_digest, part_dataset,
                             protocol_parts)
from .errors import UserError
from .extract import extract
from .io import array_digest, dict_hash, file_sha256
from .metrics import METRIC_CONVENTIONS, metrics_row, oscr
from .models import load_checkpoint, model_from_checkpoint
from .runtime import as_device
from .scores import SCORES, score as score_of

#: the part post-hoc detectors are fitted on (data/protocols.id_train_fit)
FIT_PART = "id_train_fit"

__all__ = ["PROTOCOLS", "METRIC_CONVENTIONS", "evaluate_checkpoint", "checkpoint_scores",
           "detector_scores"]


def evaluate_checkpoint(checkpoint, protocol: str = "holdout", score: str = "msp",
                        convention: str = "ours", data_root=None, device="cpu",
                        cache_dir=None, aux_root=None, recalibrate_bn: bool = False,
                        loaded: dict | None = None) -> dict:
    """One metrics row: accuracy (%) on the protocol's ID images, AUROC, FPR95, AUPR-in and
    -out; for the SSB protocols also OSCR (metrics.oscr).
    ``recalibrate_bn``: BatchNorm running statistics recomputed on ID training data first
    (batchnorm.recalibrate, a diagnostic). ``loaded``: the checkpoint already loaded
    (models.load_checkpoint), so it is not read twice."""
    id_part, ood_part = protocol_parts(protocol)
    res, meta, scores = _protocol_scores(checkpoint, loaded, protocol, score, data_root, device,
                                         cache_dir, aux_root, recalibrate_bn)
    row = {"checkpoint": str(Path(checkpoint)), "protocol": protocol,
           "recalibrate_bn": bool(recalibrate_bn),
           "weights": meta.get("weights"), "config": meta.get("config"),
           **metrics_row(res[id_part], res[ood_part], score, convention, scores)}
    if protocol in SSB_PROTOCOLS:            # open-set recognition: OSCR too (metrics.oscr)
        idt = res[id_part]
        row["oscr"] = oscr(scores[0], idt["logits"].argmax(1) == idt["labels"], scores[1])
    return row


def checkpoint_scores(checkpoint, protocol: str = "holdout", score: str = "msp", data_root=None,
                      device="cpu", cache_dir=None, aux_root=None, recalibrate_bn: bool = False,
                      loaded: dict | None = None) -> tuple:
    """(ID scores, OOD scores) of one score or detector on the protocol's ID and OOD images
    (higher = more ID; arguments in ``evaluate_checkpoint``'s order), the arrays it computes
    its metrics from, for figures and explorers (widgets.model_score_picker); cached as
    there."""
    return _protocol_scores(checkpoint, loaded, protocol, score, data_root, device, cache_dir,
                            aux_root, recalibrate_bn)[2]


def _score_spec(score: str, recalibrate_bn: bool):
    """The detector entry of ``score`` (None for a logit score); one line for an unknown
    name, or for ``--recalibrate-bn`` with a detector that runs the network itself."""
    spec = None if score in SCORES else D.detector_spec(score)
    if spec is not None and recalibrate_bn and spec.needs not in D.FROM_ARRAYS:
        raise UserError(f"--recalibrate-bn applies to logit scores and feature detectors, not to "
                        f"{score} (it runs the network itself): leave one out")
    return spec


def _protocol_scores(checkpoint, loaded, protocol, score, data_root, device, cache_dir, aux_root,
                     recalibrate_bn) -> tuple:
    """(extracted parts, their meta, (ID scores, OOD scores)) of one checkpoint; a wrong
    protocol or score is one line before the checkpoint is read (``loaded``: None reads it)."""
    id_part, ood_part = protocol_parts(protocol)
    spec = _score_spec(score, recalibrate_bn)
    loaded = loaded if loaded is not None else load_checkpoint(checkpoint)
    fit = (FIT_PART,) if spec is not None and spec.fit and spec.needs in D.FROM_ARRAYS else ()
    res, meta = extract(checkpoint, cache_dir=cache_dir, parts=(id_part, ood_part) + fit,
                        data_root=data_root, device=device, aux_root=aux_root, with_meta=True,
                        recalibrate_bn=recalibrate_bn, loaded=loaded)
    if spec is None:
        return res, meta, (score_of(score, res[id_part]["logits"]),
                           score_of(score, res[ood_part]["logits"]))
    cache = Path(cache_dir) if cache_dir else Path(checkpoint).parent / "logits"
    got = detector_scores(checkpoint, loaded, score, res, (id_part, ood_part), cache,
                          data_root=data_root, aux_root=aux_root, device=device,
                          recalibrate_bn=recalibrate_bn)
    return res, meta, (got[id_part], got[ood_part])


def detector_scores(checkpoint, loaded: dict, name: str, res: dict, parts, cache_dir: Path,
                    data_root=None, aux_root=None, device="cpu", recalibrate_bn: bool = False) -> dict:
    """``{part: scores}`` of detector ``name`` (higher = more ID), cached under the
    checkpoint, the detector, its hyper-parameters and what it was fitted on
    (detectors.cached_scores). Feature and logit detectors read the extracted ``res``
    (fitted on its ``id_train_fit`` part); activation and gradient detectors run the
    checkpoint's network on the images (fitted, where they need it, on a seeded sample
    of ``detectors.FIT_LIMIT`` un-augmented training images)."""
    spec = D.detector_spec(name)
    state = loaded["model"]
    sha = file_sha256(checkpoint)
    if spec.needs in D.FROM_ARRAYS:
        fit_key = array_digest(res[FIT_PART]["features"]) if spec.fit else None
        key = D.cache_key(sha, name, spec.params, dict_hash([fit_key, bool(recalibrate_bn)]))
        made: list = []

        def det():                         # fitted once, and only when a part is missing
            if not made:
                made.append(D.cached_fit(
                    cache_dir / "detectors" / key / "fitted.pt", name,
                    lambda: D.fitted(name, res.get(FIT_PART), w=state["fc.weight"].float(),
                                     b=state["fc.bias"].float())))
            return made[0]
        return {p: D.cached_scores(cache_dir, key, p, lambda p=p: D.score_arrays(det(), name, res[p]))
                for p in parts}
    cfg = RunConfig.from_dict(loaded["config"])
    if data_root is not None:
        cfg.data_root = str(data_root)
    if aux_root is not None:
        cfg.aux_root = str(aux_root)
    fit_key = dict_hash([inputs_digest(cfg, tuple(parts)), D.FIT_LIMIT]) if spec.fit else None
    key = D.cache_key(sha, name, spec.params, fit_key or "")
    built: dict = {}

    device = as_device(device)                     # "auto" too

    def run(p):
        if not built:
            built["splits"] = build_splits(cfg)
            model = model_from_checkpoint(loaded).to(device).eval()
            fit_ds = part_dataset(FIT_PART, built["splits"], cfg) if spec.fit else None
            built["det"] = D.fitted(name, None, model=model, fit_dataset=fit_ds, device=device)
        return D.score_images(built["det"], name, part_dataset(p, built["splits"], cfg), device)
    return {p: D.cached_scores(cache_dir, key, p, lambda p=p: run(p)) for p in parts}
