"""The paper presets: MixOE-format info files, image loading, transforms.

Layout: ``DATA_ROOT/<preset>/{train,val,test}.txt`` with one ``<relative path> <label>``
a line (the path is relative to ``DATA_ROOT/<preset>/`` and may contain spaces: the label
is the last field), images below that folder, and WebVision at ``DATA_ROOT/webvision``
(or ``--aux-root``). ``lmoe-viz data import-mixoe`` writes them from MixOE's own info
files (mixoe_info.py), ``lmoe-viz data build-info`` from each dataset's official
metadata (build_info.py). train.txt trains, val.txt selects the epoch (``best-val``) and
is the ID side of the ``paper`` protocol, test.txt gives ID test and held-out OOD test.

MixOE's quirks, and what ``faithful`` (default True) does about them:

* **butterfly** info labels run 1..200 while the split draws ID classes from 0..199.
  Faithful: labels are used as written, so class 0 (drawn as ID with probability 3/4)
  has no image and its logit is never trained, and images of label 200 are in neither
  the ID nor the OOD sets (MixOE's ``class_list`` is range(200)); a warning names the
  empty class. Corrected (``faithful=False``): labels are shifted to 0..199.
* **bird** uses 255 of NABirds' 555 classes ([200, 55]). Faithful: labels 0..254 of the
  info file are used and images of labels 255..554 are dropped (counted in ``info``).
  Corrected: all classes of the info file are used, ID/OOD in MixOE's 200:55 ratio.

Corrupt images: an unreadable ID image is fatal (it would change the reported metric);
an unreadable outlier image is skipped (another outlier is drawn) and counted.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset
from torchvision import transforms as T

from ..errors import UserError
from .deviceaug import DevicePrep
from .imagecache import ResizedImages
from .splits import Splits, check_disjoint, holdout_split, id_label_map
from .ssb import SSB, ssb_split
from .webvision import PathTable, aux_root_of, list_outliers

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def read_info(path) -> list[tuple[str, int]]:
    """Parse ``<relative path> <label>`` lines; the path may contain a space."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"info file {path} not found; run `lmoe-viz data import-mixoe --preset "
                        f"{path.parent.name} --info-dir MIXOE/info --data-root "
                        f"{path.parent.parent}` (or `lmoe-viz data build-info`, data/README.md)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read info file {path} ({exc.__class__.__name__}); fix its "
                        "permissions or rewrite it with `lmoe-viz data build-info`") from None
    out = []
    for k, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        rel, _, label = line.rstrip().rpartition(" ")
        try:
            out.append((rel, int(label)))
        except ValueError as exc:
            raise UserError(f"{path}:{k}: expected '<path> <integer label>', got {line!r}") from exc
    return out


class ImageList(Dataset):
    """Images from paths; items are ``(image, label, sample_id)``. ``decode`` ``cached``
    reads each image's resized pixels from ``cache`` (imagecache.ResizedImages) and applies
    ``transform``, the pipeline after the resize; ``file_transform`` is the whole pipeline
    for images decoded from their files (the protocols' other images)."""

    def __init__(self, paths, labels, ids, transform, skip_corrupt: bool = False,
                 decode: str = "pil", draft_size: int | None = None, cache=None,
                 file_transform=None):
        self.paths = paths if isinstance(paths, PathTable) else list(paths)
        self.labels, self.ids = list(labels), list(ids)
        self.transform, self.skip_corrupt = transform, skip_corrupt
        self.decode, self.draft_size, self.cache = decode, draft_size, cache
        self.file_transform = file_transform or transform
        self.skipped = 0

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from PIL import UnidentifiedImageError
        if self.decode == "cached":
            return self.transform(self.cache.image(self.paths[i])), self.labels[i], self.ids[i]
        for attempt in range(len(self.paths)):
            j = (i + attempt * 7919) % len(self.paths)
            try:
                img = load_rgb(self.paths[j], self.decode, self.draft_size)
                return self.transform(img), self.labels[j], self.ids[j]
            except (OSError, UnidentifiedImageError, SyntaxError) as exc:
                if not self.skip_corrupt:
                    raise UserError(f"image {self.paths[j]} is corrupt or unreadable ({exc}); "
                                    "replace it or remove its line from the info file") from exc
                self.skipped += 1
                warnings.warn(f"skipped unreadable outlier image {self.paths[j]} "
                              f"({self.skipped} skipped so far in this process)", stacklevel=2)
        raise UserError("no readable image in the auxiliary outlier set")


def load_rgb(path, decode: str = "pil", size: int | None = None):
    """One image as an RGB PIL image.

    ``pil`` (default, MixOE's pipeline): the full-resolution decode, then ``convert("RGB")``.
    ``draft``: JPEG draft mode first, which lets libjpeg decode at 1/2, 1/4 or 1/8 scale
    (DCT scaling) as long as both sides stay >= ``size``; the transform's resize then
    starts from fewer pixels. Pixels differ slightly from ``pil`` (the downscale happens
    in the DCT domain), so ``draft`` is a named option that enters the run's identity.
    Non-JPEG files decode as ``pil``. ``tensor``: torchvision's decoder to a uint8 CHW
    tensor, for the tensor transforms of ``transforms_for(..., tensor=True)``."""
    if decode == "tensor":
        from torchvision.io import ImageReadMode, decode_image, read_file
        try:
            return decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
        except RuntimeError as exc:         # torchvision's error for an undecodable file
            raise OSError(str(exc)) from exc
    from PIL import Image
    with Image.open(path) as img:
        if decode == "draft" and size and img.format == "JPEG":
            img.draft("RGB", (size, size))
        return img.convert("RGB")


class LazyImageList(Dataset):
    """The outlier pool, listed on first use: pretraining and the ``holdout``/``coarse``
    evaluations never need WebVision, so they run where it is absent."""

    def __init__(self, build, info: dict):
        self._build, self._info, self._items = build, info, None

    def _get(self) -> ImageList:
        if self._items is None:
            self._items, aux_info = self._build()
            self._info.update(aux_info)
        return self._items

    @property
    def loaded(self) -> bool:
        return self._items is not None

    def __len__(self) -> int:
        return len(self._get())

    def __getitem__(self, i: int):
        return self._get()[i]

    def __getattr__(self, name: str):       # paths, labels, ids, transform, skipped
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._get(), name)


def resize_of(image_size: int) -> int:
    """MixOE's square resize before the crop: 512 for 448, the same ratio otherwise."""
    return int(round(image_size * 512 / 448))


def transforms_for(image_size: int, train: bool, tensor: bool = False, resized: bool = False):
    """MixOE's transforms (utils/dataset.py), for ID train/test images and outliers (train).

    Train: ``Resize((512, 512))`` (square, aspect ratio not kept), ``RandomCrop(448)``,
    ``RandomHorizontalFlip()``, ``ColorJitter(brightness=32/255, saturation=0.5)``,
    ``ToTensor()``, ImageNet normalisation. Test: ``Resize((512, 512))``,
    ``CenterCrop(448)``, ``ToTensor()``, normalisation. ``image_size`` other than 448
    (dry runs, ``--image-size``) scales the resize by the same 512/448 ratio. ``resized``:
    the pipeline after the resize, for images already resized (``--decode cached``)."""
    if tensor:
        return _tensor_transforms(image_size, train)
    resize = resize_of(image_size)
    head = [] if resized else [T.Resize((resize, resize))]
    tail = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train:
        return T.Compose([*head, T.RandomCrop(image_size), T.RandomHorizontalFlip(),
                          T.ColorJitter(brightness=32 / 255, saturation=0.5), *tail])
    return T.Compose([*head, T.CenterCrop(image_size), *tail])


def _tensor_transforms(image_size: int, train: bool):
    """MixOE's transforms, the same operations and parameters, on uint8 CHW tensors
    (torchvision.transforms.v2; ``--decode tensor``): the resize is torchvision's
    antialiased kernel and ColorJitter works in uint8, so pixels differ slightly from
    PIL's; the float conversion and normalisation come last."""
    import torch
    from torchvision.transforms import v2
    resize = resize_of(image_size)
    ops = [v2.Resize((resize, resize), antialias=True)]
    if train:
        ops += [v2.RandomCrop(image_size), v2.RandomHorizontalFlip(),
                v2.ColorJitter(brightness=32 / 255, saturation=0.5)]
    else:
        ops += [v2.CenterCrop(image_size)]
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return v2.Compose(ops)


def require_present(base: Path, rels, what: str, fix: str) -> None:
    """Raise one line "N of M missing under BASE (first: ...)" when files are absent."""
    rels = list(rels)
    missing = [r for r in rels if not (base / r).is_file()]
    if missing:
        raise UserError(f"{what}: {len(missing)} of {len(rels)} images missing under {base} "
                        f"(first: {', '.join(missing[:3])}); {fix}")


#: NABirds has 555 leaf classes (labels 0..554 in MixOE's files and ours)
NABIRDS_CLASSES = 555


def class_counts(name: str, entries, faithful: bool, num_id: int, num_ood: int):
    """(num_id, num_ood, offset, (lo, hi), dropped) after MixOE's quirks (module doc).

    Info-file labels must lie in lo..hi; ``label + offset`` is the class. ``dropped`` is
    the range of file labels silently left out, as MixOE does: faithful bird 255..554
    (not among MixOE's [200, 55] classes), faithful butterfly 200 (outside its
    ``class_list``); anything else outside lo..hi is an error."""
    total = num_id + num_ood
    if name == "butterfly":
        if faithful:
            return num_id, num_ood, 0, (0, total), range(total, total + 1)
        return num_id, num_ood, -1, (1, total), range(0)
    if name == "bird":
        if faithful:
            return num_id, num_ood, 0, (0, NABIRDS_CLASSES - 1), range(total, NABIRDS_CLASSES)
        n = len({lab for _, lab in entries})
        nid = int(round(n * num_id / total))
        return nid, n - nid, 0, (0, n - 1), range(0)
    return num_id, num_ood, 0, (0, total - 1), range(0)


def build_paper_splits(name: str, cfg, num_id: int, num_ood: int):
    """The splits of paper preset ``name`` (``num_id`` ID / ``num_ood`` OOD classes)."""
    ds_dir = _dataset_dir(name, cfg)
    train, val, test = (read_info(ds_dir / f"{part}.txt") for part in ("train", "val", "test"))
    num_id, num_ood, offset, bounds, drop = class_counts(
        name, train + val + test, cfg.faithful, num_id, num_ood)
    total = num_id + num_ood
    dropped = sum(lab in drop for _, lab in train + val + test)
    if cfg.split == SSB:                 # the Semantic Shift Benchmark's classes (ssb.py)
        id_cls, ood_cls = ssb_split(name)
    else:
        id_cls = holdout_split(num_id, num_ood, cfg.split)
        ood_cls = np.array([c for c in range(total) if c not in set(id_cls.tolist())])
    check_disjoint(id_cls, ood_cls)
    lut = id_label_map(id_cls)
    rows = dict(ds_dir=ds_dir, lut=lut, offset=offset, bounds=bounds, drop=drop)
    tr = _select(train, id_cls, ds_dir / "train.txt", **rows)
    va = _select(val, id_cls, ds_dir / "val.txt", **rows)
    te_id = _select(test, id_cls, ds_dir / "test.txt", **rows)
    te_ood = _select(test, ood_cls, ds_dir / "test.txt", **rows)
    _check_id_classes_trained(name, cfg, id_cls, lut, set(tr[1]))
    _check_layout(ds_dir, {"train.txt": train, "val.txt": val, "test.txt": test})
    aux_root = aux_root_of(cfg)
    s = cfg.input_size
    tensor = cfg.decode == "tensor"
    ttr, tte = transforms_for(s, True, tensor), transforms_for(s, False, tensor)
    dec = {"decode": cfg.decode, "draft_size": resize_of(s)}
    aux_dec = dict(dec)
    if cfg.decode == "cached":           # ID images resized once (imagecache.py), outliers not
        cache = ResizedImages(tr[0] + va[0] + te_id[0] + te_ood[0], resize_of(s))
        dec = {"decode": "cached", "cache": cache}
        aux_dec = {"decode": "pil"}
        id_tr, id_te = transforms_for(s, True, resized=True), transforms_for(s, False, resized=True)
    else:
        id_tr, id_te = ttr, tte

    aux_tr = ttr
    if cfg.augment == "device":          # crop, flip, jitter on the device (deviceaug.py)
        full = DevicePrep(s, T.Resize((resize_of(s), resize_of(s))))
        id_tr, aux_tr = (DevicePrep(s) if cfg.decode == "cached" else full), full

    def outliers():
        paths, aux_info = list_outliers(aux_root, cfg.aux_exclude)
        return ImageList(paths, [-1] * len(paths), range(len(paths)), aux_tr, skip_corrupt=True,
                         **aux_dec), aux_info
    info = {"source": str(ds_dir), "faithful": cfg.faithful, "dropped_labels": dropped}
    return Splits(
        id_train=ImageList(*tr, id_tr, file_transform=ttr, **dec),
        id_val=ImageList(*va, id_te, file_transform=tte, **dec),
        id_test=ImageList(*te_id, id_te, file_transform=tte, **dec),
        ood_test=ImageList(te_ood[0], [-1] * len(te_ood[0]), te_ood[2], id_te, file_transform=tte,
                           **dec),
        aux=LazyImageList(outliers, info),
        id_classes=id_cls.tolist(), ood_classes=ood_cls.tolist(),
        info=info, ood_test_classes=[test[k][1] + offset for k in te_ood[2]])


def _dataset_dir(name: str, cfg) -> Path:
    """DATA_ROOT/<name>, or one line saying what is missing."""
    if not cfg.data_root:
        raise UserError(f"preset {name!r} needs --data-root DIR holding {name}/train.txt, "
                        f"{name}/test.txt and the images (see data/README.md)")
    ds_dir = Path(cfg.data_root) / name
    if not ds_dir.is_dir():
        raise UserError(f"dataset folder {ds_dir} not found; put {name} under --data-root "
                        "or fix the path (see data/README.md)")
    return ds_dir


def _select(entries, classes, what, *, ds_dir, lut, offset, bounds, drop):
    """(paths, labels, ids) of the info-file ``entries`` of ``classes``: a dropped label
    (a quirk, class_counts) is skipped, one outside ``bounds`` refused; labels are shifted
    by ``offset`` and mapped by ``lut`` (ID index, -1 for OOD); ids are the rows' indices."""
    keep = set(int(c) for c in classes)
    lo, hi = bounds
    paths, labels, ids = [], [], []
    for k, (rel, lab) in enumerate(entries):
        if lab in drop:
            continue
        if not lo <= lab <= hi:
            raise UserError(f"{what}: label {lab} of {rel!r} is outside {lo}..{hi}; fix "
                            "the info file or the preset")
        lab += offset
        if lab in keep:
            paths.append(ds_dir / rel)
            labels.append(lut.get(lab, -1))
            ids.append(k)
    return paths, labels, ids


def _check_id_classes_trained(name: str, cfg, id_cls, lut, present: set) -> None:
    """Every ID class has a training image (MixOE's butterfly quirk: a warning)."""
    empty = [int(c) for c in id_cls if lut[int(c)] not in present]
    if empty:
        msg = (f"ID class(es) {empty} of {name} have no training image")
        if name == "butterfly" and cfg.faithful and empty == [0]:
            warnings.warn(msg + " (MixOE's 1-based butterfly labels; pass --correct-quirks "
                          "to shift labels to 0..199)", stacklevel=3)
        else:
            raise UserError(msg + "; fix the info files or choose another --split")


def _check_layout(ds_dir: Path, infos: dict) -> None:
    """The first image of each info file exists: a wrong layout (a missing prefix) fails
    here, clearly."""
    for part, rels in infos.items():
        if rels:
            require_present(ds_dir, [rels[0][0]], f"{ds_dir / part}",
                            "the info file's paths must be relative to that folder: rerun "
                            "`lmoe-viz data import-mixoe` or `build-info` (data/README.md)")
