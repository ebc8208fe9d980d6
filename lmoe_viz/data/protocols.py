"""The data of each named evaluation protocol (DESIGN.md): which ID and OOD images.

=========  ==========================================  ======================================
protocol   ID images                                   OOD images
=========  ==========================================  ======================================
holdout    ID test (test.txt, ID classes)              test images of the held-out classes
paper      ID val (val.txt, ID classes), cut to        as many filtered WebVision images,
           whole batches of 32                         ``random.seed(0)`` sample
coarse     ID test                                     test images of the other fine-grained
                                                       datasets under DATA_ROOT, pooled,
                                                       ``random.seed(0)`` sample of the ID size
=========  ==========================================  ======================================

* ``holdout`` is MixOE's main measure (its "fine" OOD set).
* ``paper`` is what the Logit MixOE paper's Table I most likely measured (REFERENCES.md:
  every value of Table I lies on a k/800, k/576, k/768 grid, the split-0 val sizes 809,
  604, 798 cut to whole batches of 32). The first ``32 * floor(n / 32)`` val images in
  file order are kept (a non-shuffled drop-last loader); WebVision images (concepts of
  ``aux_exclude`` removed, MixOE's ``--val`` pool) are drawn as MixOE's eval does,
  ``random.seed(0); random.sample(range(len(pool)), n)``, with the test transform.
* ``paper`` on the embedded presets (no val split, no WebVision): ID test against as many
  photo crops drawn apart from the training outliers (seed ``FAR_OOD_SEED + split``, the
  same photographs, other crops), the far-OOD analogue of ID val vs WebVision.
* ``coarse`` is MixOE's: the other datasets' test.txt files, all labels, concatenated in
  MixOE's order bird, butterfly, car, aircraft, then ``random.seed(0); random.sample``
  of ID-test-size images from the pool (all of it when the pool is smaller).
"""
from __future__ import annotations

import random
import warnings
from pathlib import Path

from torch.utils.data import Subset

from ..errors import UserError
from ..io import dict_hash, file_sha256
from . import fashion
from .finegrained import ImageList, read_info
from .presets import get_preset
from .ssb import SSB, ssb_classes
from .tensors import TensorImages
from .webvision import aux_root_of, listing_digest

PROTOCOLS = ("holdout", "paper", "coarse", "ssb-easy", "ssb-hard")
#: the parts (extract.py) each protocol compares: (ID part, OOD part)
PROTOCOL_PARTS = {"holdout": ("id_test", "ood_test"), "paper": ("paper_id", "paper_ood"),
                  "coarse": ("id_test", "coarse_ood"), "ssb-easy": ("id_test", "ssb_easy"),
                  "ssb-hard": ("id_test", "ssb_hard")}
#: the open-set protocols of the Semantic Shift Benchmark (ssb.py): OSCR joins their metrics
SSB_PROTOCOLS = ("ssb-easy", "ssb-hard")
PAPER_BATCH = 32
#: the parts drawn from the WebVision pool of the paper presets
WEBVISION_PARTS = {"aux", "paper_ood"}
COARSE_ORDER = ("bird", "butterfly", "car", "aircraft")


def protocol_parts(protocol: str) -> tuple[str, str]:
    """The (ID part, OOD part) that ``protocol`` compares (PROTOCOL_PARTS); UserError for an
    unknown protocol."""
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    return PROTOCOL_PARTS[protocol]


def seeded_sample(n_pool: int, n: int, seed: int = 0) -> list[int]:
    """MixOE's draw: ``random.seed(seed); random.sample(range(n_pool), n)``."""
    return random.Random(seed).sample(range(n_pool), min(n, n_pool))


def paper_id(splits, cfg):
    """ID images of ``paper``: the first 32 * floor(n / 32) ID val images in file order (a
    drop-last loader of batch 32); ID test on the embedded presets. UserError without ID val
    images or with fewer than 32."""
    if splits.far_ood is not None:          # embedded presets
        return splits.id_test
    if splits.id_val is None:
        raise UserError(f"protocol 'paper' needs ID validation images and preset {cfg.preset} "
                        "has none; use --protocol holdout")
    n = (len(splits.id_val) // PAPER_BATCH) * PAPER_BATCH
    if n == 0:
        raise UserError(f"protocol 'paper' needs at least {PAPER_BATCH} ID val images, found "
                        f"{len(splits.id_val)}; check val.txt or use --protocol holdout")
    return Subset(splits.id_val, range(n))


def paper_ood(splits, cfg):
    """OOD images of ``paper``: as many as paper_id, MixOE's ``random.seed(0)`` sample of the
    filtered WebVision pool (test transform, an unreadable image replaced by another); on the
    embedded presets the photo crops of ``splits.far_ood``. UserError without WebVision or
    when the pool is smaller."""
    n = len(paper_id(splits, cfg))
    if splits.far_ood is not None:
        return splits.far_ood(n)
    aux = splits.aux
    if not hasattr(aux, "paths"):
        raise UserError(f"protocol 'paper' compares with WebVision; preset {cfg.preset} has "
                        "none: use --protocol holdout")
    if len(aux) < n:
        raise UserError(f"protocol 'paper' draws {n} WebVision images but the filtered pool "
                        f"holds {len(aux)}; check --aux-root / --aux-exclude")
    pool = ImageList(aux.paths, aux.labels, aux.ids, splits.id_test.file_transform, skip_corrupt=True)
    return Subset(pool, seeded_sample(len(pool), n))


def coarse_ood(splits, cfg):
    """OOD images of ``coarse`` (MixOE's): the test.txt images of the other datasets of
    COARSE_ORDER found under ``cfg.data_root``, pooled in that order, then a ``random.seed(0)``
    sample of the ID test size. UserError for a preset outside COARSE_ORDER or no other dataset;
    a warning naming those absent when not all of MixOE's others are there."""
    root = Path(cfg.data_root or "")
    if cfg.preset not in COARSE_ORDER:
        raise UserError(f"protocol 'coarse' is MixOE's, between its datasets "
                        f"({', '.join(COARSE_ORDER)}); {cfg.preset} is not one (its birds would "
                        "overlap NABirds): use --protocol holdout or ssb-easy / ssb-hard")
    others = [d for d in COARSE_ORDER if d != cfg.preset and (root / d / "test.txt").is_file()]
    if not others:
        raise UserError(f"protocol 'coarse' needs other fine-grained datasets under "
                        f"{root} ({', '.join(f'{d}/test.txt' for d in COARSE_ORDER if d != cfg.preset)}); "
                        "none found: import them or use --protocol holdout")
    missing = [d for d in COARSE_ORDER if d != cfg.preset and d not in others]
    if missing:        # the row still says coarse: the pool it measured differs from MixOE's
        warnings.warn(f"protocol 'coarse': {', '.join(missing)} not found under {root}, so the OOD "
                      f"pool is {', '.join(others)} only, not all of MixOE's other datasets")
    paths = []
    for d in others:
        paths += [root / d / rel for rel, _ in read_info(root / d / "test.txt")]
    pool = ImageList(paths, [-1] * len(paths), range(len(paths)), splits.id_test.file_transform)
    return Subset(pool, seeded_sample(len(pool), len(splits.id_test)))


#: the named far-OOD test sets of the embedded presets (presets.py), none a source of any
#: training outlier: crops of the photographs held out of the ``matched`` outliers, and
#: another embedded dataset at the preset's size
FAR_SETS = {"fashion-mnist": ("photos-heldout", "digits-28"),
            "digits": ("photos-heldout", "fashion-8")}
FAR_PREFIX = "far:"


def far_part(name: str) -> str:
    """The extraction part of far-OOD set ``name`` (``far:photos-heldout``)."""
    return FAR_PREFIX + name


def far_dataset(name: str, splits, cfg):
    """Far-OOD set ``name`` (FAR_SETS); ``photos-heldout`` only where no training outlier
    came from those photographs (``outliers=matched``)."""
    sets = splits.ood_sets or {}
    if name not in sets:
        known = ", ".join(sets) or "none"
        raise UserError(f"unknown far-OOD set {name!r} for preset {cfg.preset}; choose one of {known}")
    if name == "photos-heldout" and cfg.outliers != "matched":
        raise UserError("far-OOD set 'photos-heldout' is clean only for --outliers matched "
                        "(outliers 'crops' are drawn from every photograph): pass --outliers matched")
    return sets[name]()


def ssb_grade(grade: str):
    """The part of the SSB protocol ``ssb-<grade>``: the test images of the unknown classes
    of that grade (ssb.py: hard = Medium + Hard), of a run trained with ``--split ssb``."""
    def part(splits, cfg):
        if cfg.split != SSB:
            raise UserError(f"protocol ssb-{grade} tests a run trained with --split ssb; this run "
                            f"has split {cfg.split!r}: use --protocol holdout, or train with --split ssb")
        keep = set(ssb_classes(cfg.preset)[grade])
        return Subset(splits.ood_test, [i for i, c in enumerate(splits.ood_test_classes) if c in keep])
    return part


def id_train_fit(splits, cfg):
    """The ID training images as the test set sees them (no augmentation: the test
    transform), what post-hoc detectors are fitted on (detectors.py)."""
    ds = splits.id_train
    if isinstance(ds, TensorImages):
        return TensorImages(ds.images, ds.labels, ds.ids, augment=None)
    if isinstance(ds, ImageList):
        return ImageList(ds.paths, ds.labels, ds.ids, splits.id_test.transform,
                         decode=ds.decode, draft_size=ds.draft_size, cache=ds.cache,
                         file_transform=splits.id_test.file_transform)
    raise UserError(f"preset {cfg.preset}: no un-augmented copy of its training images")


def part_dataset(part: str, splits, cfg):
    """The dataset of one extraction part: id_test, ood_test, id_val, aux, id_train_fit (the
    training images, un-augmented), a protocol's, or a named far-OOD set (``far:<name>``)."""
    if part.startswith(FAR_PREFIX):
        return far_dataset(part[len(FAR_PREFIX):], splits, cfg)
    simple = {"id_test": splits.id_test, "ood_test": splits.ood_test, "id_val": splits.id_val,
              "aux": splits.aux}
    if part in simple:
        if simple[part] is None:
            raise UserError(f"preset {cfg.preset} has no {part} split")
        return simple[part]
    builders = {"paper_id": paper_id, "paper_ood": paper_ood, "coarse_ood": coarse_ood,
                "id_train_fit": id_train_fit, "ssb_easy": ssb_grade("easy"),
                "ssb_hard": ssb_grade("hard")}
    if part not in builders:
        raise UserError(f"unknown part {part!r}; choose one of {', '.join([*simple, *builders])}")
    return builders[part](splits, cfg)


def inputs_digest(cfg, parts) -> str | None:
    """A hash of the data files the parts read, so a cache is never stale: the info files
    (this dataset's, and for ``coarse_ood`` the other datasets' test.txt, which may appear
    later); for Fashion-MNIST the four idx files; for the parts drawn from WebVision
    (``aux``, ``paper_ood``) the outlier pool's listing (webvision.listing_digest: another
    ``--aux-root`` is another cache entry); digits ship inside scikit-learn."""
    if cfg.preset == "fashion-mnist":       # the idx files found (content, not place)
        d = fashion.locate(cfg.data_root)
        return None if d is None else dict_hash(
            {s: file_sha256(fashion._find(d, s)) for s in fashion.FILES.values()})
    if not cfg.data_root:
        return None
    root = Path(cfg.data_root)
    names = [cfg.preset] + (list(COARSE_ORDER) if "coarse_ood" in parts else [])
    files = [root / d / f"{s}.txt" for d in dict.fromkeys(names) for s in ("train", "val", "test")]
    digest = {str(f.relative_to(root)): file_sha256(f) for f in files if f.is_file()}
    if WEBVISION_PARTS & set(parts) and get_preset(cfg.preset).arch == "resnet50":
        if aux_root_of(cfg).is_dir():        # absent: the part says so when it is built
            digest["webvision"] = listing_digest(aux_root_of(cfg), cfg.aux_exclude)
    return dict_hash(digest)
