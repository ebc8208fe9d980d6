"""Import MixOE's own info files: the only route to MixOE's exact splits.

MixOE's repository ships ``info/<dataset>/{train,val,test}.txt`` (one ``<path> <label>`` a
line) with paths relative to its image folders: bird ``DATA/bird/images``, aircraft
``DATA/aircraft/images``, butterfly ``DATA/butterfly/images_small``, car ``DATA/car``.
``lmoe-viz data import-mixoe --preset P --info-dir DIR --data-root ROOT`` reads them from
``DIR/<preset>/`` (or ``DIR`` itself), prefixes each path with that folder so it is
relative to ``ROOT/<preset>`` (our layout), checks that every image exists and writes our
``train.txt``, ``val.txt`` and ``test.txt``. Labels are kept as MixOE wrote them.

Aircraft images may also sit where the official 2013b archive puts them
(``data/images``); that folder is used when ``images/`` is absent. MixOE's files are not
shipped with lmoe_viz: download MixOE's ``info/`` folder.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .build_info import dataset_dir, write_info
from .finegrained import read_info

#: image folders of MixOE's layout (utils/dataset.py), relative to ROOT/<preset>
IMAGE_PREFIXES = {"bird": ("images/",), "aircraft": ("images/", "data/images/"),
                  "butterfly": ("images_small/",), "car": ("",)}
#: label ranges of MixOE's files (REFERENCES.md)
LABEL_RANGES = {"bird": (0, 554), "aircraft": (0, 99), "butterfly": (1, 200), "car": (0, 195)}
SPLITS = ("train", "val", "test")


def info_folder(info_dir, preset: str) -> Path:
    """The folder of MixOE's train.txt, val.txt and test.txt: ``info_dir/preset``, else
    ``info_dir`` itself; UserError when neither holds all three."""
    d = Path(info_dir)
    for cand in (d / preset, d):
        if all((cand / f"{s}.txt").is_file() for s in SPLITS):
            return cand
    raise UserError(f"MixOE info files for {preset} not found in {d / preset} or {d} "
                    f"(train.txt, val.txt, test.txt); pass --info-dir MIXOE/info, the info/ "
                    "folder of MixOE's repository")


def image_prefix(ds_dir: Path, preset: str) -> str:
    """The first of the preset's IMAGE_PREFIXES that is a folder under ``ds_dir`` (car: always
    ``''``), the prefix of MixOE's paths; UserError when none exists."""
    prefixes = IMAGE_PREFIXES[preset]
    for prefix in prefixes:
        if prefix == "" or (ds_dir / prefix).is_dir():
            return prefix
    raise UserError(f"image folder {ds_dir / prefixes[0]} not found; MixOE's {preset} paths "
                    f"are relative to it: put the images there (data/README.md)")


def import_mixoe(preset: str, info_dir, data_root) -> list[Path]:
    """``import-mixoe``: MixOE's info files of ``preset``, labels checked against LABEL_RANGES and
    kept as written, paths prefixed by image_prefix, every image checked, written as our
    train.txt, val.txt and test.txt; returns their paths. UserError for a label out of range."""
    ds_dir = dataset_dir(preset, data_root, IMAGE_PREFIXES)
    src = info_folder(info_dir, preset)
    lo, hi = LABEL_RANGES[preset]
    rows = {}
    for split in SPLITS:
        entries = read_info(src / f"{split}.txt")
        bad = [(rel, lab) for rel, lab in entries if not lo <= lab <= hi]
        if bad:
            raise UserError(f"{src / f'{split}.txt'}: label {bad[0][1]} of {bad[0][0]!r} is "
                            f"outside MixOE's {preset} range {lo}..{hi}; these are not MixOE's "
                            f"{preset} files: pass --info-dir of MixOE's info/ folder")
        rows[split] = entries
    prefix = image_prefix(ds_dir, preset)
    rows = {s: [(prefix + rel, lab) for rel, lab in r] for s, r in rows.items()}
    return write_info(ds_dir, rows, f"MixOE's {preset} info files",
                      f"put the {preset} images under {ds_dir / prefix} as MixOE expects "
                      "(data/README.md)")
