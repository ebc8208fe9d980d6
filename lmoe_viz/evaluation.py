"""Evaluate a checkpoint under a named protocol, score and metric convention.

``evaluate_checkpoint`` extracts (and caches, extract.py) the logits of the protocol's ID
and OOD images (data/protocols.py), then computes accuracy on the ID images and the OOD
metrics of one score (scores.py) under ``ours`` or ``mixoe`` (metrics.py). Every row
says its protocol, score and metric convention, so tables never mix them silently.
"""
from __future__ import annotations

from pathlib import Path

from .data.protocols import PROTOCOLS, protocol_parts
from .extract import extract
from .metrics import METRIC_CONVENTIONS, metrics_row

__all__ = ["PROTOCOLS", "METRIC_CONVENTIONS", "evaluate_checkpoint"]


def evaluate_checkpoint(checkpoint, protocol: str = "holdout", score: str = "msp",
                        convention: str = "ours", data_root=None, device="cpu",
                        cache_dir=None, aux_root=None, recalibrate_bn: bool = False,
                        loaded: dict | None = None) -> dict:
    """One metrics row: accuracy (%) on the protocol's ID images, AUROC/FPR95/AUPR-in.
    ``recalibrate_bn``: BatchNorm running statistics recomputed on ID training data first
    (batchnorm.recalibrate, a diagnostic). ``loaded``: the checkpoint already loaded
    (models.load_checkpoint), so it is not read twice."""
    id_part, ood_part = protocol_parts(protocol)
    res, meta = extract(checkpoint, cache_dir=cache_dir, parts=(id_part, ood_part),
                        data_root=data_root, device=device, aux_root=aux_root, with_meta=True,
                        recalibrate_bn=recalibrate_bn, loaded=loaded)
    return {"checkpoint": str(Path(checkpoint)), "protocol": protocol,
            "recalibrate_bn": bool(recalibrate_bn),
            "weights": meta.get("weights"), "config": meta.get("config"),
            **metrics_row(res[id_part], res[ood_part], score, convention)}
