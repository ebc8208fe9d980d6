"""Write MixOE-format info files from each dataset's official metadata.

``lmoe-viz data build-info --preset P --data-root ROOT`` reads the official files below
``ROOT/<preset>`` and writes ``train.txt`` / ``test.txt`` (and ``val.txt`` where the
dataset has an official validation split) there, one ``<relative path> <label>`` a line.

* bird (NABirds): ``images.txt`` (id, path under images/), ``image_class_labels.txt``
  (id, class id), ``train_test_split.txt`` (id, 1 = train). Class ids are sparse; labels
  are their rank in sorted order (0..554). The ``bird`` preset's faithful mode then keeps
  labels 0..254 (MixOE's 255-class count; finegrained.py).
* aircraft (FGVC-Aircraft 2013b): ``data/variants.txt`` and
  ``data/images_variant_{train,val,test}.txt`` (``<image id> <variant>``, variants may
  contain spaces); images ``data/images/<id>.jpg``; label = line of the variant (0..99).
* butterfly (Butterfly200): ``Butterfly200_{train,val,test}_release.txt`` whose first two
  fields are the image path and the species label (1..200), written as they are: the
  1-based labels are MixOE's (finegrained.py).
* car (Stanford Cars): ``cars_annos.mat`` (``relative_im_path``, ``class`` 1..196,
  ``test``); labels are shifted to 0..195.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..io import atomic_write_text


def _need(path: Path, dataset: str) -> Path:
    if not path.is_file():
        raise UserError(f"official {dataset} metadata file {path} not found; unpack the "
                        f"official {dataset} archive into {path.parent} (see data/README.md)")
    return path


def _pairs(path: Path):
    """Lines of ``<key> <rest>``; rest keeps its spaces."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            key, _, rest = line.strip().partition(" ")
            out.append((key, rest.strip()))
    return out


def _write(ds_dir: Path, split: str, rows) -> Path:
    path = ds_dir / f"{split}.txt"
    atomic_write_text(path, "".join(f"{rel} {lab}\n" for rel, lab in rows))
    return path


def nabirds(ds_dir: Path) -> dict:
    images = dict(_pairs(_need(ds_dir / "images.txt", "NABirds")))
    labels = {k: int(v) for k, v in _pairs(_need(ds_dir / "image_class_labels.txt", "NABirds"))}
    is_train = {k: v == "1" for k, v in _pairs(_need(ds_dir / "train_test_split.txt", "NABirds"))}
    rank = {c: i for i, c in enumerate(sorted(set(labels.values())))}
    rows = {"train": [], "test": []}
    for k in sorted(images, key=lambda s: images[s]):
        rows["train" if is_train[k] else "test"].append((f"images/{images[k]}", rank[labels[k]]))
    return rows


def aircraft(ds_dir: Path) -> dict:
    data = ds_dir / "data"
    variants = [v.strip() for v in _need(data / "variants.txt", "FGVC-Aircraft").read_text(
        encoding="utf-8").splitlines() if v.strip()]
    index = {v: i for i, v in enumerate(variants)}
    rows = {}
    for split in ("train", "val", "test"):
        f = _need(data / f"images_variant_{split}.txt", "FGVC-Aircraft")
        rows[split] = [(f"data/images/{img}.jpg", index[v]) for img, v in _pairs(f)]
    return rows


def butterfly(ds_dir: Path) -> dict:
    rows = {}
    for split in ("train", "val", "test"):
        f = _need(ds_dir / f"Butterfly200_{split}_release.txt", "Butterfly200")
        rows[split] = []
        for line in f.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if parts:
                rows[split].append((parts[0], int(parts[1])))
    return rows


def cars(ds_dir: Path) -> dict:
    from scipy.io import loadmat
    mat = loadmat(_need(ds_dir / "cars_annos.mat", "Stanford Cars"), squeeze_me=True)
    rows = {"train": [], "test": []}
    for a in mat["annotations"]:
        rows["test" if int(a["test"]) else "train"].append((str(a["relative_im_path"]),
                                                            int(a["class"]) - 1))
    return rows


BUILDERS = {"bird": nabirds, "aircraft": aircraft, "butterfly": butterfly, "car": cars}


def build_info(preset: str, data_root) -> list[Path]:
    if preset not in BUILDERS:
        raise UserError(f"build-info knows the paper presets {', '.join(BUILDERS)}, not {preset!r}")
    if not data_root:
        raise UserError("build-info needs --data-root DIR (the folder holding the dataset folder)")
    ds_dir = Path(data_root) / preset
    if not ds_dir.is_dir():
        raise UserError(f"dataset folder {ds_dir} not found; unpack {preset} there")
    rows = BUILDERS[preset](ds_dir)
    return [_write(ds_dir, split, r) for split, r in rows.items()]
