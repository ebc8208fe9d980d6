"""The logits of one ID and one OOD test sample, and of their mixes in input and logit
space (Figs. 5-6, notebook 04, widgets.mix_explorer)."""
from __future__ import annotations

import torch

from .config import RunConfig
from .data import build_splits
from .errors import UserError
from .losses import logit_mix, mixup
from .models import load_checkpoint, model_from_checkpoint


def sample_responses(checkpoint, id_index: int, ood_index: int, lam: float,
                     data_root=None) -> dict:
    """Logits of one ID test sample, one OOD test sample, their input-space mix
    lam x_in + (1 - lam) x_out and their logit-space mix (eq. 13) (Figs. 5-6)."""
    ckpt = load_checkpoint(checkpoint)
    cfg = RunConfig.from_dict(ckpt["config"])
    if data_root:
        cfg.data_root = data_root
    splits = build_splits(cfg)
    for name, ds, i in (("id_index", splits.id_test, id_index), ("ood_index", splits.ood_test, ood_index)):
        if not 0 <= i < len(ds):
            raise UserError(f"{name} {i} is outside 0..{len(ds) - 1}; pick a test sample in range")
    if not 0 <= lam <= 1:
        raise UserError(f"lam must be in [0, 1], got {lam}")
    model = model_from_checkpoint(ckpt).eval()
    x_in, y, _ = splits.id_test[id_index]
    x_out = splits.ood_test[ood_index][0]
    with torch.no_grad():
        z = model(torch.stack([x_in, x_out, mixup(x_in, x_out, lam)]))
    return {"id": z[0].numpy(), "ood": z[1].numpy(), "input_mix": z[2].numpy(),
            "logit_mix": logit_mix(z[0], z[1], lam).numpy(), "label": int(y), "lam": lam,
            "x_id": x_in.numpy(), "x_ood": x_out.numpy()}
