"""What keeps old checkpoints and run names valid, in one place.

* ``upgrade_config``: a config dict stored by an older version (a checkpoint, a
  metrics.json) in today's field names: ``batching`` became ``bn`` (--bn), and the untyped
  ``extra`` dict (whose one key was ``aux_root``) became the typed field ``aux_root``.
* ``named_identity``: the identity a run is named by (its hash) in the keys and values runs
  were named by before later options existed: the BatchNorm regime keeps its old key
  ``batching``; the empty ``extra`` dict every old identity held stays; an option at its
  default that did not exist then (``decode`` pil, ``outliers`` crops, or unused by an
  ID-only method; ``lc_mode`` fixed; ``augment`` host) adds nothing. So every run on disk, a study in
  progress and every logit cache keep their names (tests/test_identity.py pins them).
"""
from __future__ import annotations

from .errors import UserError

#: options added after runs existed, at the value that adds nothing to an old name
SILENT_DEFAULTS = {"decode": "pil", "outliers": "crops", "lc_mode": "fixed", "augment": "host"}


def upgrade_config(d: dict) -> dict:
    """A stored config in today's field names (module doc); an unknown ``extra`` key is
    refused in one line."""
    d = dict(d)
    if "batching" in d and "bn" not in d:           # checkpoints written before --bn
        d["bn"] = d.pop("batching")
    if "extra" in d:                                 # written before the typed aux_root
        extra = dict(d.pop("extra") or {})
        if extra.get("aux_root") and not d.get("aux_root"):
            d["aux_root"] = extra.pop("aux_root")
        extra.pop("aux_root", None)
        if extra:
            raise UserError(f"config extras {sorted(extra)} are not known to this version; "
                            "remove them from the stored config")
    return d


def named_identity(d: dict, id_only: bool) -> dict:
    """``d`` (the fields that change what is trained) under the names old runs were hashed
    with (module doc); ``id_only``: the method trains on no outliers."""
    d = dict(d)
    for key, default in SILENT_DEFAULTS.items():
        if d.get(key) == default or (key == "outliers" and id_only):
            d.pop(key, None)
    d["batching"] = d.pop("bn")
    d["extra"] = {}
    return d
