"""WebVision 1.0 as auxiliary outliers, with the ID domains' ImageNet concepts excluded.

Layout read (WebVision 1.0 as distributed): ``google/qNNNN/*.jpg``, ``flickr/qNNNN/*.jpg``,
``info/synsets.txt`` (the 1000 ILSVRC-2012 synsets, one a line, in ImageNet's class
order) and ``info/queries_synsets_map.txt`` (``<query id> <synset id>`` a line, both
1-based). A query folder is dropped when its synset is in an excluded concept group.

The paper removes the concepts of birds, aircraft, butterflies, cars and dogs (PAPER.md).
The groups below are ImageNet-1k class indices (0-based) of those concepts, typed in
from ImageNet's class list; every paper preset excludes all five groups by default.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError

EXCLUDED_CONCEPTS = {
    # cock .. great grey owl; black grouse .. black swan; white stork .. albatross
    "birds": [*range(7, 25), *range(80, 101), *range(127, 147)],
    # airliner, airship, warplane, wing
    "aircraft": [404, 405, 895, 908],
    # admiral, ringlet, monarch, cabbage butterfly, sulphur butterfly, lycaenid
    "butterflies": [*range(321, 327)],
    # ambulance, beach wagon, cab, convertible, jeep, limousine, minivan, Model T,
    # pickup, racer, sports car
    "cars": [407, 436, 468, 511, 609, 627, 656, 661, 717, 751, 817],
    # Chihuahua .. Mexican hairless
    "dogs": [*range(151, 269)],
}
DEFAULT_GROUPS = tuple(EXCLUDED_CONCEPTS)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def excluded_synsets(groups=DEFAULT_GROUPS) -> set[int]:
    unknown = [g for g in groups if g not in EXCLUDED_CONCEPTS]
    if unknown:
        raise UserError(f"unknown WebVision exclusion group(s) {unknown}; "
                        f"choose from {', '.join(EXCLUDED_CONCEPTS)}")
    return {i for g in groups for i in EXCLUDED_CONCEPTS[g]}


def read_query_map(root: Path) -> dict[int, int]:
    """Query id (1-based) -> synset index (0-based, ImageNet order)."""
    path = root / "info" / "queries_synsets_map.txt"
    synsets = root / "info" / "synsets.txt"
    for p in (path, synsets):
        if not p.is_file():
            raise UserError(f"WebVision file {p} is missing; download WebVision 1.0 (info/ "
                            "folder included) and pass --aux-root or put it at DATA_ROOT/webvision")
    n_syn = sum(1 for line in synsets.read_text().splitlines() if line.strip())
    out = {}
    for k, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            q, s = int(parts[0]), int(parts[1])
        except (ValueError, IndexError) as exc:
            raise UserError(f"{path}:{k}: expected '<query id> <synset id>', got {line!r}") from exc
        if not 1 <= s <= n_syn:
            raise UserError(f"{path}:{k}: synset id {s} outside 1..{n_syn} of {synsets}")
        out[q] = s - 1
    return out


def list_outliers(root, groups=DEFAULT_GROUPS) -> tuple[list[Path], dict]:
    """Image paths of WebVision minus the excluded concepts, and a summary."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"WebVision folder {root} not found; pass --aux-root DIR "
                        "(google/, flickr/ and info/ inside) or put it at DATA_ROOT/webvision")
    qmap = read_query_map(root)
    drop = excluded_synsets(groups)
    paths, kept_q, dropped_q = [], set(), set()
    for source in ("google", "flickr"):
        src = root / source
        if not src.is_dir():
            continue
        for qdir in sorted(p for p in src.iterdir() if p.is_dir()):
            try:
                q = int(qdir.name.lstrip("q"))
            except ValueError:
                continue
            if q not in qmap:
                raise UserError(f"query folder {qdir} has no entry in info/queries_synsets_map.txt")
            if qmap[q] in drop:
                dropped_q.add(q)
                continue
            kept_q.add(q)
            try:
                files = sorted(f for f in qdir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            except PermissionError as exc:
                raise UserError(f"cannot read folder {qdir} ({exc}); fix its permissions") from exc
            paths.extend(files)
    if not paths:
        raise UserError(f"no WebVision images found under {root}/google or {root}/flickr")
    return paths, {"aux_root": str(root), "aux_images": len(paths), "queries_kept": len(kept_q),
                   "queries_excluded": len(dropped_q), "excluded_groups": list(groups)}
