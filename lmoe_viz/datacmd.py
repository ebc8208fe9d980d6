"""``lmoe-viz data``: say where each preset's data was found, what is missing, and the fix."""
from __future__ import annotations

from pathlib import Path

from .config import RunConfig
from .data import fashion
from .data.build_info import build_info
from .data.finegrained import require_present
from .data.mixoe_info import import_mixoe
from .data.presets import get_preset
from .errors import UserError


def check(preset: str, data_root=None, split: int = 0, faithful: bool = True) -> int:
    """``lmoe-viz data check``: print the preset, build its splits and print their sizes and
    sources (Splits.describe) and classes; for the ResNet-50 presets check that every listed
    image exists and list WebVision. Returns 0; UserError (one line, the fix) for missing data."""
    p = get_preset(preset)
    print(f"preset {p.name}: {p.description}")
    print(f"  classes: {p.num_id} ID / {p.num_ood} OOD, {p.image_size} px, {p.channels} channel(s), "
          f"network {p.arch}")
    if preset == "fashion-mnist":
        found = fashion.locate(data_root)
        if found is None:
            raise UserError("Fashion-MNIST not found in " +
                            ", ".join(map(str, fashion.candidate_dirs(data_root))) + "; " + fashion.FIX)
    splits = p.build(RunConfig(preset=preset, data_root=data_root, split=split, faithful=faithful))
    if p.arch == "resnet50":        # every listed image must exist, not only the first
        for part in ("id_train", "id_val", "id_test", "ood_test"):
            paths = getattr(splits, part).paths
            if paths:
                base = Path(data_root) / preset
                require_present(base, [str(Path(q).relative_to(base)) for q in paths], part,
                                "rerun `lmoe-viz data import-mixoe` or `build-info` after "
                                "putting the images in place (data/README.md)")
        print("  every listed image exists")
        len(splits.aux)                 # list WebVision now (listed lazily elsewhere)
    for key, value in splits.describe().items():
        if key not in ("id_classes", "ood_classes"):
            print(f"  {key}: {value}")
    print(f"  ID classes (split {split}): {splits.id_classes}")
    print(f"  OOD classes: {splits.ood_classes}")
    return 0


def build_info_cmd(preset: str, data_root, info_dir=None) -> int:
    """``build-info`` (official release) or, with ``info_dir``, ``import-mixoe``."""
    if info_dir is not None:
        written = import_mixoe(preset, info_dir, data_root)
    else:
        written = build_info(preset, data_root)
    for path in written:
        n = sum(1 for _ in open(path, encoding="utf-8"))
        print(f"wrote {path} ({n} images)")
    return 0
