"""Bit-identity check of training: a digits pretraining and a fine-tune of every method
and option that changes the objective, each digested (weights, logits, metrics).

    python tests/tools/bitcheck.py OUT.json      # run at two commits, then diff the files

A refactor that claims to change no number must give the same file at both commits on the
same machine (the digests cover every weight bit and every test logit).
"""
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import torch

from lmoe_viz.config import RunConfig
from lmoe_viz.io import dict_hash
from lmoe_viz.train import train

FINETUNES = [dict(method="ce"), dict(method="oe"), dict(method="energy_oe"),
             dict(method="mixoe"), dict(method="mixoe", lc=True),
             dict(method="mixoe", mix_op="cutmix", lc=True),
             dict(method="logit_mixoe"), dict(method="logit_mixoe", lc=True),
             dict(method="logit_mixoe", lc=True, lc_mode="stop-id"),
             dict(method="logit_mixoe", mix_layer="layer1", id_forward="separate",
                  mix_continue="mixed", mix_noise="both"),
             dict(method="mixoe", outliers="matched"), dict(method="logit_mixoe", bn="separate")]


def digest(run: Path) -> dict:
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    h = hashlib.sha256()
    for k, v in sorted(ckpt["model"].items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    m = json.loads((run / "metrics.json").read_text())
    # the config's identity hash (the run hash adds the init checkpoint's file hash, whose
    # bytes hold the temporary folder's path)
    return {"weights": h.hexdigest()[:16],
            "identity": dict_hash(RunConfig.from_dict(m["config"]).identity()),
            **{k: m[k] for k in ("accuracy", "auroc", "fpr95") if k in m}}


def main(out: str) -> None:
    torch.set_num_threads(1)
    common = dict(preset="digits", limit_batches=3, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        result = {"pretrained": None}
        train(RunConfig(method="baseline", epochs=1, **common), tmp / "pre", progress=False)
        result["pretrained"] = digest(tmp / "pre")
        for i, kw in enumerate(FINETUNES):
            cfg = RunConfig(init=str(tmp / "pre" / "checkpoint.pt"), epochs=1, **common, **kw)
            train(cfg, tmp / f"ft{i}", progress=False)
            result[json.dumps(kw, sort_keys=True)] = digest(tmp / f"ft{i}")
    Path(out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
