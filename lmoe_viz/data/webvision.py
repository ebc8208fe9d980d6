"""WebVision 1.0 as auxiliary outliers, with concepts excluded by WordNet id, as MixOE.

Layout read (WebVision 1.0 as distributed): ``google/qNNNN/*.jpg``, ``flickr/qNNNN/*.jpg``,
``info/synsets.txt`` (the 1000 ILSVRC-2012 synsets in ImageNet's order, one a line,
``<wnid> <words>``) and ``info/queries_synsets_map.txt`` (``<query id> <synset id>`` a
line, both 1-based). A query folder is dropped when its synset's WNID is excluded.

Exclusion lists (``aux_exclude``, an explicit named option recorded in every run):

* ``mixoe`` (default): the 223 WNIDs of MixOE's ``INET_SPLITS`` (dog 120, bird 52, car 42,
  butterfly 6, aircraft 3), removed for every ID dataset, as MixOE's code does
  (``mixoe_inet_splits.json``, read from MixOE's utils/dataset.py);
* ``none``: keep every concept;
* a path: a text file of WNIDs (whitespace separated, ``#`` comments allowed).
"""
from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..io import array_digest, cached_array

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
MIXOE_LIST = Path(__file__).with_name("mixoe_inet_splits.json")
WNID = re.compile(r"^n\d{8}$")


@functools.lru_cache(maxsize=1)
def mixoe_groups() -> dict[str, tuple[str, ...]]:
    """MixOE's INET_SPLITS: {group: WNIDs}."""
    return {g: tuple(w) for g, w in json.loads(MIXOE_LIST.read_text())["groups"].items()}


def excluded_wnids(spec: str = "mixoe") -> frozenset[str]:
    """The WNIDs removed from WebVision for exclusion list ``spec`` (module doc)."""
    if spec == "mixoe":
        return frozenset(w for ws in mixoe_groups().values() for w in ws)
    if spec == "none":
        return frozenset()
    path = Path(spec)
    if not path.is_file():
        raise UserError(f"--aux-exclude {spec!r} is neither mixoe, none nor a file of WNIDs; "
                        "pass one of those")
    words = [w for line in _text(path).splitlines() for w in line.split("#", 1)[0].split()]
    bad = [w for w in words if not WNID.match(w)]
    if bad:
        raise UserError(f"{path}: {bad[0]!r} is not a WordNet id like n01530575; list one "
                        "WNID per line")
    return frozenset(words)


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path} as text ({type(exc).__name__}); pass the "
                        "WebVision 1.0 info file or a text file of WNIDs") from None


def read_query_wnids(root: Path) -> dict[int, str]:
    """Query id (1-based) -> WNID of its synset."""
    qpath, spath = root / "info" / "queries_synsets_map.txt", root / "info" / "synsets.txt"
    for p in (qpath, spath):
        if not p.is_file():
            raise UserError(f"WebVision file {p} is missing; download WebVision 1.0 (info/ "
                            "folder included) and pass --aux-root or put it at DATA_ROOT/webvision")
    wnids = [line.split()[0] for line in _text(spath).splitlines() if line.strip()]
    if not all(WNID.match(w) for w in wnids):
        raise UserError(f"{spath} does not list WNIDs (lines '<wnid> <words>'); use WebVision "
                        "1.0's info/synsets.txt")
    out = {}
    for k, line in enumerate(_text(qpath).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            q, s = int(parts[0]), int(parts[1])
        except (ValueError, IndexError):
            raise UserError(f"{qpath}:{k}: expected '<query id> <synset id>', got {line!r}") from None
        if not 1 <= s <= len(wnids):
            raise UserError(f"{qpath}:{k}: synset id {s} outside 1..{len(wnids)} of {spath}")
        out[q] = wnids[s - 1]
    return out


class PathTable(Sequence):
    """Image paths as one numpy array of UTF-8 bytes relative to ``root``: a few dozen
    bytes an image and no Python object each, so 2.4 million WebVision paths cost ~100 MB
    once, shared by forked loader workers instead of copied by their reference counting.
    Items are ``Path`` objects."""

    def __init__(self, root, rels):
        self.root = str(root)
        self.rels = rels if isinstance(rels, np.ndarray) else np.array(
            [r.encode("utf-8") for r in rels], dtype=bytes)

    def __len__(self) -> int:
        return len(self.rels)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return Path(self.root, self.rels[i].decode("utf-8"))


def _query_folders(root: Path, qmap: dict) -> list[tuple[Path, str]]:
    """(query folder, its WNID) for every folder of google/ and flickr/."""
    out = []
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
            out.append((qdir, qmap[q]))
    return out


def _walk(root: Path, folders) -> np.ndarray:
    rels = []
    for qdir in folders:
        try:
            files = sorted(f for f in qdir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        except PermissionError as exc:
            raise UserError(f"cannot read folder {qdir} ({exc}); fix its permissions") from exc
        rels.extend(str(f.relative_to(root)).encode("utf-8") for f in files)
    return np.array(rels, dtype=bytes) if rels else np.array([], dtype="S1")


def aux_root_of(cfg) -> Path:
    """The WebVision folder of a run: ``--aux-root`` (RunConfig.aux_root), else
    ``DATA_ROOT/webvision``."""
    return Path(cfg.aux_root or Path(cfg.data_root) / "webvision")


def listing_digest(root, exclude: str = "mixoe") -> str:
    """The content of the outlier pool: a hash of its listing (the relative paths of the
    images kept after the exclusion), not of the folder's path (logit caches key on it)."""
    table, _ = list_outliers(root, exclude)
    return array_digest(table.rels)


def list_outliers(root, exclude: str = "mixoe") -> tuple[PathTable, dict]:
    """Image paths of WebVision minus the excluded concepts, and a summary.

    The walk over the kept query folders (2.4 million files) is cached
    (io.cached_array) under a key of the folder's state: the root, and the name and
    modification time of every kept query folder (adding or removing an image changes its
    folder's time). A fine-tuning run and every evaluation of it list WebVision once."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"WebVision folder {root} not found; pass --aux-root DIR "
                        "(google/, flickr/ and info/ inside) or put it at DATA_ROOT/webvision")
    qmap = read_query_wnids(root)
    drop = excluded_wnids(exclude)
    folders = _query_folders(root, qmap)
    keep = [q for q, w in folders if w not in drop]
    key = {"root": str(root.resolve()),
           "folders": [(str(q.relative_to(root)), q.stat().st_mtime_ns) for q in keep]}
    rels = cached_array("webvision", key, lambda: _walk(root, keep))
    if not len(rels):
        raise UserError(f"no WebVision images found under {root}/google or {root}/flickr")
    kept = {w for _, w in folders if w not in drop}
    dropped = {w for _, w in folders if w in drop}
    return PathTable(root, rels), {"aux_root": str(root), "aux_images": len(rels),
                                   "aux_exclude": exclude, "concepts_kept": len(kept),
                                   "concepts_excluded": len(dropped)}
