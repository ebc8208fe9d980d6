"""Fashion-MNIST from the standard idx files.

Where the files are looked for: a ``--data-root`` the user gives is used or refused, never
replaced by another copy (the folder itself, ``fashion-mnist/`` or ``FashionMNIST/raw``
below it as torchvision lays it out, then torchvision's checksummed download into it).
Without one: ``$LMOE_VIZ_FASHION_DIR``, Debian's package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``), then the download into ``~/.cache/lmoe_viz``
(never in tests: they pass a folder of local files).
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
         "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
FIX = ("pass --data-root DIR holding the four Fashion-MNIST idx files, or "
       "`apt-get install dataset-fashion-mnist`")


def candidate_dirs(data_root) -> list[Path]:
    """The folders searched, in order: only those under ``data_root`` when it is given; else
    ``$LMOE_VIZ_FASHION_DIR``, Debian's folder, then the earlier download's (``_download``),
    so a downloaded copy is found (and digested, protocols.inputs_digest) as any other."""
    if data_root:
        root = Path(data_root)
        return [root, root / "fashion-mnist", root / "FashionMNIST" / "raw"]
    dirs = []
    env = os.environ.get("LMOE_VIZ_FASHION_DIR")
    if env:
        dirs.append(Path(env))
    dirs.append(DEBIAN_DIR)
    dirs.append(download_root(None) / "FashionMNIST" / "raw")     # where _download puts it
    return dirs


def download_root(data_root) -> Path:
    """Where torchvision's download goes: ``data_root``, else ``~/.cache/lmoe_viz``."""
    return Path(data_root) if data_root else Path.home() / ".cache" / "lmoe_viz"


def _find(d: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (d / name).is_file():
            return d / name
    return None


def locate(data_root=None) -> Path | None:
    """The first of candidate_dirs(data_root) that holds all four idx files (gzipped or not);
    None when none does. Never downloads."""
    for d in candidate_dirs(data_root):
        if all(_find(d, s) for s in FILES.values()):
            return d
    return None


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (optionally gzipped): big-endian magic, dims, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
        zero, dtype, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype != 0x08:
            raise ValueError("bad magic")
        dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
        arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        return arr.reshape(dims)
    except (OSError, ValueError, EOFError, struct.error) as exc:
        raise UserError(f"{path} is not a readable idx file ({exc}); replace it: {FIX}") from exc


def load(data_root=None, download: bool = True):
    """Return ``((x_train, y_train, x_test, y_test), where)``; images float in [0, 1]."""
    d = locate(data_root)
    if d is None and download:
        d = _download(data_root)
    if d is None:
        where = ", ".join(map(str, candidate_dirs(data_root)))
        if data_root:
            raise UserError(f"Fashion-MNIST not found under --data-root {data_root} (looked in "
                            f"{where}); put the four idx files there, or leave --data-root out "
                            f"to use the system copy ({DEBIAN_DIR})")
        raise UserError(f"Fashion-MNIST not found in {where}; {FIX}")
    arrs = {k: read_idx(_find(d, s)) for k, s in FILES.items()}
    x = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0)[:, None]  # noqa: E731
    y = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
    return (x(arrs["train_x"]), y(arrs["train_y"]), x(arrs["test_x"]), y(arrs["test_y"])), str(d)


def _download(data_root) -> Path | None:
    root = download_root(data_root)
    try:
        from torchvision.datasets import FashionMNIST
        FashionMNIST(str(root), train=True, download=True)
        FashionMNIST(str(root), train=False, download=True)
    except Exception:  # noqa: BLE001 - offline: report where we looked instead
        return None
    return root / "FashionMNIST" / "raw"
