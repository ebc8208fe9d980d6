"""Miniature datasets in the real release layouts (the formats, not the code's assumptions).

Each builder writes tiny JPEGs and the official metadata files of one release:

* NABirds: ``images.txt`` (``<uuid with dashes> NNNN/<32 hex>.jpg``),
  ``image_class_labels.txt`` (``<uuid> <class id>``, sparse ids such as 295..1010),
  ``train_test_split.txt`` (``<uuid> 1|0``), images under ``images/``;
* FGVC-Aircraft 2013b: ``data/variants.txt`` (names with spaces and slashes),
  ``data/images_variant_{train,val,trainval,test}.txt`` (``<7-digit id> <variant>``),
  images ``data/images/<id>.jpg`` (leading zeros);
* Butterfly200: ``Butterfly200_{train,val,test}_release.txt`` (``<NNN.Genus_species/NNN.jpg>
  <species 1..200> <genus> <subfamily> <family>``), images under ``images_small/``;
* Stanford Cars: the devkit (``devkit/cars_train_annos.mat``,
  ``devkit/cars_test_annos_withlabels.mat`` with bbox_*/class/fname structs, images
  ``cars_train/NNNNN.jpg``, ``cars_test/NNNNN.jpg``) or the all-in-one release
  (``cars_annos.mat`` with relative_im_path/bbox_*/class/test, images ``car_ims/``);
* CUB-200-2011: ``CUB_200_2011/`` with ``classes.txt`` (``<id> NNN.Name_with_underscores``),
  ``images.txt`` (``<id> NNN.Name/Name_NNNN_NNNNN.jpg``), ``image_class_labels.txt``
  (``<id> <class>``), ``train_test_split.txt`` (``<id> 1|0``), images under ``images/``;
* WebVision 1.0: ``info/synsets.txt`` (``<wnid> <words>``, real WNIDs),
  ``info/queries_synsets_map.txt`` (1-based ``<query> <synset>``), ``google/qNNNN/``,
  ``flickr/qNNNN/``;
* MixOE's info files (``<path> <label>`` a line, no newline at the end of the file,
  paths relative to MixOE's image folders).
"""
from __future__ import annotations

import io
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

_JPEGS: dict = {}


def jpeg_bytes(value: int, size=(24, 20)) -> bytes:
    key = (value % 8, size)
    if key not in _JPEGS:
        rng = np.random.RandomState(value % 8)
        arr = (rng.rand(size[1], size[0], 3) * 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG")
        _JPEGS[key] = buf.getvalue()
    return _JPEGS[key]


def put_jpeg(path: Path, value: int = 0, size=(24, 20)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(value, size))


# ---------------------------------------------------------------- NABirds
def nabirds(root: Path, num_classes: int = 257, train_per_class: int = 3, test_per_class: int = 1):
    ds = root / "bird"
    ds.mkdir(parents=True)
    class_ids = [295 + 2 * c for c in range(num_classes)]          # sparse, as NABirds'
    rng = np.random.RandomState(1)
    rows = []
    for cid in class_ids:
        for k in range(train_per_class + test_per_class):
            u = uuid.UUID(int=int(rng.randint(0, 2**62)) << 64 | int(rng.randint(0, 2**62)))
            rel = f"{cid:04d}/{u.hex}.jpg"
            put_jpeg(ds / "images" / rel, cid)
            rows.append((u, rel, cid, k < train_per_class))
    _caltech_ucsd_files(ds, rows)
    return ds


def _caltech_ucsd_files(folder: Path, rows) -> None:
    """The metadata of the CUB-200 family (CUB-200-2011, and NABirds after it):
    ``images.txt`` (``<id> <path>``), ``image_class_labels.txt`` (``<id> <class>``),
    ``train_test_split.txt`` (``<id> 1|0``), from rows (id, path, class, is_train)."""
    for name, field in (("images.txt", 1), ("image_class_labels.txt", 2)):
        (folder / name).write_text("".join(f"{r[0]} {r[field]}\n" for r in rows))
    (folder / "train_test_split.txt").write_text("".join(f"{r[0]} {int(r[3])}\n" for r in rows))


# ---------------------------------------------------------------- FGVC-Aircraft 2013b
def aircraft(root: Path, num_classes: int = 100, trainval_per_class: int = 4, test_per_class: int = 1):
    ds = root / "aircraft"
    data = ds / "data"
    data.mkdir(parents=True)
    variants = [("Cessna 172" if c == 5 else "F/A-18" if c == 7 else f"A{300 + c}-{c}")
                for c in range(num_classes)]
    (data / "variants.txt").write_text("".join(v + "\n" for v in variants))
    rows = {"train": [], "val": [], "test": []}
    img = 34309
    for c, v in enumerate(variants):
        for k in range(trainval_per_class + test_per_class):
            name = f"{img:07d}"
            img += 17
            put_jpeg(data / "images" / f"{name}.jpg", c)
            part = "test" if k >= trainval_per_class else ("val" if k % 2 else "train")
            rows[part].append(f"{name} {v}\n")
    for part, lines in rows.items():
        (data / f"images_variant_{part}.txt").write_text("".join(lines))
    (data / "images_variant_trainval.txt").write_text("".join(rows["train"] + rows["val"]))
    return ds


# ---------------------------------------------------------------- CUB-200-2011
def cub(root: Path, num_classes: int = 200, train_per_class: int = 4, test_per_class: int = 1):
    """The release as its tarball unpacks: root/cub/CUB_200_2011/..., image ids 1..N in
    class order, train and test interleaved as in the release."""
    base = root / "cub" / "CUB_200_2011"
    base.mkdir(parents=True)
    names = [f"{c:03d}.{'Black_footed_Albatross' if c == 1 else f'Bird_{c}_Sparrow'}"
             for c in range(1, num_classes + 1)]
    (base / "classes.txt").write_text("".join(f"{c} {n}\n" for c, n in enumerate(names, 1)))
    rows, i = [], 0
    for c, name in enumerate(names, 1):
        species = name.split(".", 1)[1]
        for k in range(train_per_class + test_per_class):
            i += 1
            rel = f"{name}/{species}_{i:04d}_{796000 + i}.jpg"
            put_jpeg(base / "images" / rel, c)
            rows.append((i, rel, c, k != 1))          # the second image of a class: test
    _caltech_ucsd_files(base, rows)
    return base


# ---------------------------------------------------------------- Butterfly200
def butterfly(root: Path, num_classes: int = 200, train_per_class: int = 3, test_per_class: int = 1):
    ds = root / "butterfly"
    ds.mkdir(parents=True)
    rows = {"train": [], "val": [], "test": []}
    for species in range(1, num_classes + 1):
        folder = f"{species:03d}.Genus{species}_species{species}"
        for k in range(train_per_class + 2 * test_per_class):
            rel = f"{folder}/{k + 1:03d}.jpg"
            put_jpeg(ds / "images_small" / rel, species)
            part = "train" if k < train_per_class else ("val" if k == train_per_class else "test")
            genus, sub, fam = species // 4 + 1, species // 20 + 1, species // 50 + 1
            rows[part].append(f"{rel} {species} {genus} {sub} {fam}\n")
    for part, lines in rows.items():
        (ds / f"Butterfly200_{part}_release.txt").write_text("".join(lines))
    return ds


# ---------------------------------------------------------------- Stanford Cars
def _mat_value(v):
    """MATLAB's types in the release files: uint8/uint16 1x1 numbers, char arrays."""
    if isinstance(v, str):
        return np.array([v])
    return np.array([[v]], dtype=np.uint8 if v < 256 else np.uint16)


def _struct(records: list[dict]) -> np.ndarray:
    """A 1xN MATLAB struct array (what scipy.io.loadmat reads from the release files)."""
    keys = list(records[0])
    arr = np.zeros((1, len(records)), dtype=[(k, "O") for k in keys])
    for i, r in enumerate(records):
        arr[0, i] = tuple(_mat_value(r[k]) for k in keys)
    return arr


def cars_devkit(root: Path, num_classes: int = 196, train_per_class: int = 3, test_per_class: int = 1):
    from scipy.io import savemat
    ds = root / "car"
    (ds / "devkit").mkdir(parents=True)
    recs = {"train": [], "test": []}
    for split, per in (("train", train_per_class), ("test", test_per_class)):
        n = 0
        for c in range(1, num_classes + 1):
            for _ in range(per):
                n += 1
                fname = f"{n:05d}.jpg"
                put_jpeg(ds / f"cars_{split}" / fname, c)
                recs[split].append({"bbox_x1": 3, "bbox_y1": 2, "bbox_x2": 20, "bbox_y2": 18,
                                    "class": c, "fname": fname})
    savemat(ds / "devkit" / "cars_train_annos.mat", {"annotations": _struct(recs["train"])})
    savemat(ds / "devkit" / "cars_test_annos_withlabels.mat", {"annotations": _struct(recs["test"])})
    (ds / "devkit" / "cars_meta.mat").write_bytes(b"")   # present in the devkit, not read
    return ds


def cars_allinone(root: Path, num_classes: int = 196, train_per_class: int = 3, test_per_class: int = 1):
    from scipy.io import savemat
    ds = root / "car"
    ds.mkdir(parents=True)
    recs, n = [], 0
    for c in range(1, num_classes + 1):
        for k in range(train_per_class + test_per_class):
            n += 1
            rel = f"car_ims/{n:06d}.jpg"
            put_jpeg(ds / rel, c)
            recs.append({"relative_im_path": rel, "bbox_x1": 3, "bbox_y1": 2, "bbox_x2": 20,
                         "bbox_y2": 18, "class": c, "test": int(k >= train_per_class)})
    savemat(ds / "cars_annos.mat", {"annotations": _struct(recs),
                                    "class_names": np.array([f"Car {c}" for c in range(num_classes)],
                                                            dtype=object)})
    return ds


# ---------------------------------------------------------------- WebVision 1.0
#: real WNIDs: n01530575 brambling (bird, excluded by MixOE), n02690373 airliner (aircraft),
#: n02085620 Chihuahua (dog), n04285008 sports car (car), n02276258 admiral (butterfly);
#: kept: n01440764 tench, n04552348 warplane (MixOE keeps it), n03028079 church, n07747607 orange
WEBVISION_WNIDS = ["n01440764", "n01530575", "n02690373", "n02085620", "n04285008",
                   "n02276258", "n04552348", "n03028079", "n07747607"]
EXCLUDED_BY_MIXOE = {"n01530575", "n02690373", "n02085620", "n04285008", "n02276258"}


def webvision(root: Path, per_query: int = 6):
    wv = root / "webvision"
    (wv / "info").mkdir(parents=True)
    fillers = [f"n09{i:06d}" for i in range(1000 - len(WEBVISION_WNIDS))]
    synsets = WEBVISION_WNIDS + fillers
    (wv / "info" / "synsets.txt").write_text("".join(f"{w} concept {i}\n" for i, w in enumerate(synsets)))
    # two queries per listed concept, 1-based query and synset ids
    qmap = [(2 * s + k + 1, s + 1) for s in range(len(WEBVISION_WNIDS)) for k in range(2)]
    (wv / "info" / "queries_synsets_map.txt").write_text("".join(f"{q} {s}\n" for q, s in qmap))
    for q, s in qmap:
        for src in ("google", "flickr"):
            for i in range(per_query // 2):
                put_jpeg(wv / src / f"q{q:04d}" / f"{i:06d}.jpg", q, size=(30, 22))
    return wv


# ---------------------------------------------------------------- MixOE's info files
MIXOE_PREFIX = {"bird": "images/", "aircraft": "images/", "butterfly": "images_small/", "car": ""}


def mixoe_info(info_dir: Path, preset: str, rows: dict) -> Path:
    """Write ``info_dir/<preset>/{train,val,test}.txt`` as MixOE ships them (no final newline)."""
    d = info_dir / preset
    d.mkdir(parents=True, exist_ok=True)
    for split, r in rows.items():
        (d / f"{split}.txt").write_text("\n".join(f"{rel} {lab}" for rel, lab in r))
    return d


def mixoe_tree(root: Path, info_dir: Path, preset: str, num_classes: int, label_base: int = 0,
               train_per_class: int = 3, test_per_class: int = 1):
    """Images in MixOE's layout and MixOE-format info files for them."""
    ds = root / preset
    rows = {"train": [], "val": [], "test": []}
    for c in range(num_classes):
        for k in range(train_per_class + 1 + test_per_class):
            rel = (f"cars_{'test' if k > train_per_class else 'train'}/{c:03d}{k:02d}.jpg"
                   if preset == "car" else f"{c:04d}/{k:02d}.jpg")
            put_jpeg(ds / MIXOE_PREFIX[preset] / rel, c)
            part = "train" if k < train_per_class else ("val" if k == train_per_class else "test")
            rows[part].append((rel, c + label_base))
    return mixoe_info(info_dir, preset, rows)


#: Absolute tolerance on a logit of the small fp32 network when the same weights see the same
#: images through another batch shape, thread count or process (DDP shards): oneDNN picks
#: kernels per shape and CPU (AVX2 vs AVX-512 / AMX), which changes the order of float sums.
#: Measured: at most ~1e-6 between batch sizes 1..256 and 1 vs 2 threads on an Intel Xeon with
#: AVX-512 (tests/test_reliability.py measures it again on the machine it runs on); 1e-4 leaves
#: two orders of magnitude while staying far below any difference a wrong shard or wrong
#: BatchNorm statistics make (those move logits by 1e-2 or more).
LOGIT_TOL = 1e-4


def oracle_logits(checkpoint) -> dict:
    """ID test and OOD test logits and labels of a checkpoint, one process, fp32 on the CPU."""
    from lmoe_viz.extract import extract
    return extract(checkpoint, parts=("id_test", "ood_test"), cache_dir=Path(checkpoint).parent / "oracle")


def msp_oracle(checkpoint, logit_tol: float = 0.0) -> dict:
    """Accuracy (%) and AUROC of MSP for a checkpoint, recomputed here from its logits with
    scikit-learn (independent of lmoe_viz.metrics): ID test = positives, OOD test = negatives.

    With ``logit_tol`` > 0 it also gives the range each metric can take when every logit may
    differ by up to ``logit_tol`` from the oracle's (another batch shape or kernel):
    ``accuracy_range`` counts a sample whose top-1 margin is within 2 tol as either right or
    wrong; ``auroc_range`` counts an (ID, OOD) pair whose MSPs are within the band a logit
    change of tol allows (log MSP moves by at most 2 tol) as either order. A metric outside its
    range cannot come from the same logits up to tol."""
    from scipy.special import log_softmax, softmax
    from sklearn.metrics import roc_auc_score

    r = oracle_logits(checkpoint)
    a, b, y = r["id_test"]["logits"], r["ood_test"]["logits"], r["id_test"]["labels"]
    msp = np.concatenate([softmax(a, 1).max(1), softmax(b, 1).max(1)])
    truth = np.concatenate([np.ones(len(a)), np.zeros(len(b))])
    out = {"accuracy": 100.0 * float((a.argmax(1) == y).mean()),
           "auroc": float(roc_auc_score(truth, msp))}
    if logit_tol > 0:
        true_z = a[np.arange(len(y)), y]
        other = np.where(np.eye(a.shape[1], dtype=bool)[y], -np.inf, a).max(1)
        margin = true_z - other
        out["accuracy_range"] = (100.0 * float((margin > 2 * logit_tol).mean()),
                                 100.0 * float((margin >= -2 * logit_tol).mean()))
        la, lb = np.sort(log_softmax(a, 1).max(1)), np.sort(log_softmax(b, 1).max(1))
        band = 4 * logit_tol                  # each side's log MSP moves by up to 2 tol
        surely_above = np.searchsorted(lb, la - band, side="left").sum()
        surely_below = (len(lb) - np.searchsorted(lb, la + band, side="right")).sum()
        pairs = len(la) * len(lb)
        out["auroc_range"] = (float(surely_above / pairs), float(1 - surely_below / pairs))
    return out


def assert_msp_matches(metrics: dict, checkpoint, logit_tol: float = LOGIT_TOL) -> dict:
    """The run's accuracy and AUROC lie in the ranges the oracle's logits allow at
    ``logit_tol`` (msp_oracle); returns the oracle for further checks."""
    o = msp_oracle(checkpoint, logit_tol)
    lo, hi = o["accuracy_range"]
    assert lo - 1e-9 <= metrics["accuracy"] <= hi + 1e-9, (metrics["accuracy"], o)
    lo, hi = o["auroc_range"]
    assert lo - 1e-12 <= metrics["auroc"] <= hi + 1e-12, (metrics["auroc"], o)
    return o


def write_idx(path, arr) -> None:
    """An idx file (gzip), the format of the MNIST / Fashion-MNIST releases."""
    import gzip
    import struct
    arr = np.asarray(arr, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.tobytes())
