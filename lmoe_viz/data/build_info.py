"""Write our info files from each dataset's official release, when MixOE's are not at hand.

``lmoe-viz data build-info --preset P --data-root ROOT`` reads the official metadata below
``ROOT/<preset>`` and writes ``train.txt``, ``val.txt`` and ``test.txt`` there (one
``<path relative to ROOT/<preset>> <label>`` a line), after checking that every image
listed exists. Where MixOE cut a validation set out of the official training set, a
seeded cut does the same: ``numpy.random.RandomState(0).permutation`` of the training
list, the first ``floor(n / 10)`` to val (MixOE's sizes are exactly floor(n / 10): bird
2,392 of 23,929, aircraft 666 of 6,667, butterfly 1,027 of 10,270, car 814 of 8,144).
MixOE's own cut is not published as a rule, so only ``import-mixoe`` gives its exact
images; sizes and label ranges match.

Formats read (as released):

* bird (NABirds): ``images.txt`` (``<uuid> NNNN/<hex>.jpg``), ``image_class_labels.txt``
  (``<uuid> <class id>``), ``train_test_split.txt`` (``<uuid> 1|0``); images under
  ``images/``. Labels: rank of the class id among those with images (0..554).
* aircraft (FGVC-Aircraft 2013b): ``data/variants.txt``, ``data/images_variant_trainval.txt``
  and ``..._test.txt`` (``<7-digit id> <variant, may contain spaces>``); images
  ``data/images/<id>.jpg`` (or ``images/<id>.jpg``, MixOE's place, when only that folder
  exists). Label: line of the variant in variants.txt (0..99).
  train + val = the official trainval (MixOE), test = the official test.
* butterfly (Butterfly200): ``Butterfly200_{train,val,test}_release.txt`` with five
  fields (``<path> <species> <genus> <subfamily> <family>``), paths relative to
  ``images_small/``. Species labels 1..200 are written as released (MixOE's, see
  finegrained.py). train + val = official train; test = official val + test (15,009).
* car (Stanford Cars), either release: the devkit (``devkit/cars_train_annos.mat``,
  ``cars_test_annos_withlabels.mat`` in ``devkit/`` or beside it, images ``cars_train/``
  and ``cars_test/``: MixOE's paths) or the all-in-one (``cars_annos.mat`` with
  ``relative_im_path``, ``class``, ``test``; images ``car_ims/``). Labels class - 1. With
  both unpacked, the all-in-one is read when ``car_ims/`` exists, the devkit otherwise.
* cub (CUB-200-2011): ``images.txt`` (``<id> NNN.Name/Name_NNNN_NNN.jpg``),
  ``image_class_labels.txt`` (``<id> <class 1..200>``), ``train_test_split.txt``
  (``<id> 1|0``), ``classes.txt`` (``<class> NNN.Name``), images under ``images/``; in
  ``cub/`` or in the release's own ``cub/CUB_200_2011/``. Labels class - 1 (0..199: the
  SSB split files' indices, ssb.py). Val: the seeded cut of the official train images.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from ..io import atomic_write_text
from .finegrained import require_present

VAL_SEED = 0


def _need(path: Path, dataset: str, hint: str = "") -> Path:
    if not path.is_file():
        raise UserError(f"official {dataset} metadata file {path} not found; unpack the "
                        f"official {dataset} release into {path.parent}{hint} (data/README.md)")
    return path


def _pairs(path: Path):
    """Lines of ``<key> <rest>``; rest keeps its inner spaces."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            key, _, rest = line.strip().partition(" ")
            out.append((key, rest.strip()))
    return out


def _int(text: str, where) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{where}: expected an integer label, got {text!r}; use the release's "
                        "files unchanged") from None


def val_cut(rows: list, seed: int = VAL_SEED) -> tuple[list, list]:
    """(train, val): the first floor(n / 10) of a seeded permutation go to val, order kept."""
    n = len(rows)
    val_idx = set(np.random.RandomState(seed).permutation(n)[: n // 10].tolist())
    return ([r for i, r in enumerate(rows) if i not in val_idx],
            [r for i, r in enumerate(rows) if i in val_idx])


def _with_val(train_rows: list, test_rows: list) -> dict:
    train, val = val_cut(train_rows)
    return {"train": train, "val": val, "test": test_rows}


def nabirds(ds_dir: Path) -> dict:
    """{train, val, test} rows (path, label) of the NABirds release (module doc): images sorted
    by path, label the rank of the class id, val the seeded cut of the official train images.
    UserError for a missing file, or an image without a class or split line."""
    images = dict(_pairs(_need(ds_dir / "images.txt", "NABirds")))
    labels = {k: _int(v, ds_dir / "image_class_labels.txt")
              for k, v in _pairs(_need(ds_dir / "image_class_labels.txt", "NABirds"))}
    is_train = {k: v == "1" for k, v in _pairs(_need(ds_dir / "train_test_split.txt", "NABirds"))}
    rank = {c: i for i, c in enumerate(sorted(set(labels.values())))}
    rows = {"train": [], "test": []}
    for k in sorted(images, key=lambda s: images[s]):
        if k not in labels or k not in is_train:
            raise UserError(f"NABirds image id {k} of images.txt has no class or split line; "
                            "use the files of one release")
        rows["train" if is_train[k] else "test"].append((f"images/{images[k]}", rank[labels[k]]))
    return _with_val(rows["train"], rows["test"])


def aircraft(ds_dir: Path) -> dict:
    """Rows of FGVC-Aircraft 2013b: train + val from the official trainval (the train and val
    files when there is no trainval file), val the seeded cut; test the official test; label
    the line of the variant in variants.txt. UserError for a missing file or unknown variant."""
    data = ds_dir / "data"
    variants = [v.strip() for v in _need(data / "variants.txt", "FGVC-Aircraft 2013b").read_text(
        encoding="utf-8").splitlines() if v.strip()]
    index = {v: i for i, v in enumerate(variants)}

    def rows(*names):
        out = []
        for name in names:
            for img, v in _pairs(_need(data / f"images_variant_{name}.txt", "FGVC-Aircraft 2013b")):
                if v not in index:
                    raise UserError(f"variant {v!r} of {data / f'images_variant_{name}.txt'} is "
                                    f"not in {data / 'variants.txt'}")
                out.append((f"{prefix}{img}.jpg", index[v]))
        return out
    # the archive's data/images/, or images/ where MixOE's layout put them
    prefix = "data/images/" if (data / "images").is_dir() or not (ds_dir / "images").is_dir() \
        else "images/"
    trainval = (rows("trainval") if (data / "images_variant_trainval.txt").is_file()
                else rows("train", "val"))
    return _with_val(trainval, rows("test"))


def butterfly(ds_dir: Path) -> dict:
    """Rows of Butterfly200: train + val from the official train (val the seeded cut), test the
    official val + test; species labels 1..200 as released. UserError for a missing file or a
    line without five fields."""
    def rows(split):
        f = _need(ds_dir / f"Butterfly200_{split}_release.txt", "Butterfly200")
        out = []
        for k, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 5:
                raise UserError(f"{f}:{k}: expected 5 fields '<path> <species> <genus> "
                                f"<subfamily> <family>', got {len(parts)}")
            out.append((f"images_small/{parts[0]}", _int(parts[1], f"{f}:{k}")))
        return out
    return _with_val(rows("train"), rows("val") + rows("test"))


def _mat_annotations(path: Path):
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError
    try:
        return loadmat(path, squeeze_me=True)["annotations"]
    except (ValueError, KeyError, IndexError, OSError, MatReadError) as exc:
        raise UserError(f"{path} is not a Stanford Cars annotation file ({type(exc).__name__}); "
                        "use the release's .mat files") from None


def _field(a, name: str, path: Path):
    try:
        return a[name]
    except (ValueError, KeyError, IndexError):
        raise UserError(f"{path} has no '{name}' field in its annotations; use the Stanford "
                        "Cars release's .mat files unchanged") from None


def cars(ds_dir: Path) -> dict:
    """Rows of Stanford Cars from the all-in-one release (cars_annos.mat, read when car_ims/
    exists or there is no devkit) or else the devkit (test labels in devkit/ or beside it);
    labels class - 1, val the seeded cut of train. UserError when neither release, or the
    devkit's test labels, is found, or an annotation file is unreadable."""
    allinone = ds_dir / "cars_annos.mat"
    devkit = ds_dir / "devkit" / "cars_train_annos.mat"
    # both releases unpacked: the one whose images are there (MixOE's paths are the devkit's)
    if allinone.is_file() and ((ds_dir / "car_ims").is_dir() or not devkit.is_file()):
        rows = {"train": [], "test": []}
        for a in np.atleast_1d(_mat_annotations(allinone)):
            test = _int(str(_field(a, "test", allinone)), allinone)
            rows["test" if test else "train"].append(
                (str(_field(a, "relative_im_path", allinone)),
                 _int(str(_field(a, "class", allinone)), allinone) - 1))
        return _with_val(rows["train"], rows["test"])
    if not devkit.is_file():
        raise UserError(f"Stanford Cars metadata not found in {ds_dir}: expected the all-in-one "
                        f"release (cars_annos.mat, car_ims/) or the devkit release "
                        f"(devkit/cars_train_annos.mat, cars_train/, cars_test/); unpack one there")
    test_mat = next((p for p in (ds_dir / "devkit" / "cars_test_annos_withlabels.mat",
                                 ds_dir / "cars_test_annos_withlabels.mat") if p.is_file()), None)
    if test_mat is None:
        raise UserError(f"devkit release found in {ds_dir} but no cars_test_annos_withlabels.mat "
                        f"(the test labels, published separately); put it in {ds_dir / 'devkit'}")
    out = {}
    for split, mat in (("train", devkit), ("test", test_mat)):
        out[split] = [(f"cars_{split}/{_field(a, 'fname', mat)}",
                       _int(str(_field(a, "class", mat)), mat) - 1)
                      for a in np.atleast_1d(_mat_annotations(mat))]
    return _with_val(out["train"], out["test"])


def cub(ds_dir: Path) -> dict:
    """Rows of CUB-200-2011 (in ``ds_dir`` or its CUB_200_2011/): images in id order, labels
    class - 1, val the seeded cut of the official train images. UserError for a missing file,
    a classes.txt without ids 1..200, or an image without a class or split line."""
    base = ds_dir / "CUB_200_2011" if (ds_dir / "CUB_200_2011" / "images.txt").is_file() else ds_dir
    prefix = "" if base == ds_dir else "CUB_200_2011/"
    what = "CUB-200-2011 (the release's CUB_200_2011/ folder)"
    classes = dict(_pairs(_need(base / "classes.txt", what)))
    if sorted(_int(k, base / "classes.txt") for k in classes) != list(range(1, 201)):
        raise UserError(f"{base / 'classes.txt'} lists {len(classes)} classes, CUB-200-2011 has "
                        "200 (ids 1..200): use the files of one release")
    images = dict(_pairs(_need(base / "images.txt", what)))
    labels = {k: _int(v, base / "image_class_labels.txt")
              for k, v in _pairs(_need(base / "image_class_labels.txt", what))}
    is_train = {k: v == "1" for k, v in _pairs(_need(base / "train_test_split.txt", what))}
    rows = {"train": [], "test": []}
    for k in sorted(images, key=lambda s: _int(s, base / "images.txt")):
        if k not in labels or k not in is_train:
            raise UserError(f"CUB image id {k} of images.txt has no class or split line; use the "
                            "files of one release")
        rows["train" if is_train[k] else "test"].append((f"{prefix}images/{images[k]}", labels[k] - 1))
    return _with_val(rows["train"], rows["test"])


BUILDERS = {"bird": nabirds, "aircraft": aircraft, "butterfly": butterfly, "car": cars, "cub": cub}


def write_info(ds_dir: Path, rows: dict, what: str, fix: str) -> list[Path]:
    """Check every image of ``rows`` exists under ``ds_dir``, then write the info files."""
    for split, r in rows.items():
        require_present(ds_dir, [rel for rel, _ in r], f"{what} {split}", fix)
    paths = []
    for split, r in rows.items():
        path = ds_dir / f"{split}.txt"
        atomic_write_text(path, "".join(f"{rel} {lab}\n" for rel, lab in r))
        paths.append(path)
    return paths


def dataset_dir(preset: str, data_root, known) -> Path:
    """``data_root/preset``, checked: UserError when ``preset`` is not in ``known``, when
    ``data_root`` is not given, or when that folder does not exist."""
    if preset not in known:
        raise UserError(f"this command knows the paper presets {', '.join(known)}, not {preset!r}")
    if not data_root:
        raise UserError("this command needs --data-root DIR (the folder holding the dataset folder)")
    ds_dir = Path(data_root) / preset
    if not ds_dir.is_dir():
        raise UserError(f"dataset folder {ds_dir} not found; unpack {preset} there (data/README.md)")
    return ds_dir


def build_info(preset: str, data_root) -> list[Path]:
    """``build-info``: the rows of ``preset``'s official release (BUILDERS), every image checked,
    written as train.txt, val.txt and test.txt in ``data_root/preset``; returns their paths."""
    ds_dir = dataset_dir(preset, data_root, BUILDERS)
    rows = BUILDERS[preset](ds_dir)
    return write_info(ds_dir, rows, f"{preset} release",
                      "unpack the images of the same release there (data/README.md)")
