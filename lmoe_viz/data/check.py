"""``lmoe-viz data``: say where each preset's data was found, what is missing, and the fix."""
from __future__ import annotations

from ..config import RunConfig
from ..errors import UserError
from .presets import get_preset


def check(preset: str, data_root=None, split: int = 0, faithful: bool = True) -> int:
    p = get_preset(preset)
    print(f"preset {p.name}: {p.description}")
    print(f"  classes: {p.num_id} ID / {p.num_ood} OOD, {p.image_size} px, {p.channels} channel(s), "
          f"network {p.arch}")
    if preset == "fashion-mnist":
        from . import fashion
        found = fashion.locate(data_root)
        if found is None:
            raise UserError("Fashion-MNIST not found in " +
                            ", ".join(map(str, fashion.candidate_dirs(data_root))) + "; " + fashion.FIX)
    splits = p.build(RunConfig(preset=preset, data_root=data_root, split=split, faithful=faithful))
    for key, value in splits.describe().items():
        if key not in ("id_classes", "ood_classes"):
            print(f"  {key}: {value}")
    print(f"  ID classes (split {split}): {splits.id_classes}")
    print(f"  OOD classes: {splits.ood_classes}")
    return 0


def build_info_cmd(preset: str, data_root) -> int:
    from .build_info import build_info
    for path in build_info(preset, data_root):
        n = sum(1 for _ in open(path, encoding="utf-8"))
        print(f"wrote {path} ({n} images)")
    return 0
