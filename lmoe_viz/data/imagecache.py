"""``--decode cached``: the ID images of a paper preset decoded and resized once, exactly as
MixOE's pipeline does, and reused by every epoch, method, alpha and seed.

MixOE's transforms start with a deterministic square ``Resize((512, 512))`` of the decoded
RGB image (finegrained.transforms_for). Its output, a 512 x 512 x 3 uint8 image, is stored
for every ID image (train, val, test) in one memory-mapped array; a dataset item reads its
row and applies the rest of the pipeline (random crop, flip, colour jitter; or the centre
crop) to the same pixels, so ``cached`` is bit-identical to ``pil`` and stays out of the
run's name. WebVision outliers (millions of images) keep their decode path.

The cache lives in ``<cache home>/resized/`` (io.cache_home: ``$LMOE_VIZ_CACHE``), keyed
by the images' relative paths (the info files' content), each file's size and
modification time, the resize and the torchvision and Pillow versions. It is built in
parallel into a ``.partial`` file of its own (its whole size reserved on the disk first,
so a disk that fills up is an error before any row is written, never a crash mid-build),
renamed when complete, and only then described by its ``.json``: an interrupted build, or a
cache file that cannot be read, is never trusted (it is rebuilt). Builders of one cache
(DDP ranks, a local sweep, array jobs on one shared folder) take turns under an exclusive
lock on ``<key>.lock``: the first builds, the others wait and then read what it built. A
folder that cannot be written, or a disk without room for it, is refused in one line
before anything trains.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import PIL
import torchvision
from PIL import Image
from torchvision import transforms as T

from ..errors import UserError
from ..io import atomic_write_text, cache_home, dict_hash

#: images per task of the parallel build
CHUNK = 64


def cache_key(paths, resize: int) -> str:
    """The content a cache stands for: every image's path, size and modification time, the
    resize, and the libraries that decode and resize."""
    ident = [(str(p), *_stat(p)) for p in paths]
    return dict_hash({"images": dict_hash(ident), "n": len(ident), "resize": resize,
                      "pipeline": "PIL open, convert('RGB'), torchvision Resize((r, r))",
                      "torchvision": torchvision.__version__, "pillow": PIL.__version__})


def _stat(p) -> tuple:
    try:
        st = Path(p).stat()
    except OSError:
        raise UserError(f"image {p} is missing or unreadable; restore it or rebuild the info "
                        "files (lmoe-viz data build-info)") from None
    return st.st_size, st.st_mtime_ns


def _resized(path, resize: int) -> np.ndarray:
    """MixOE's first two steps: decode to RGB, then the square resize (torchvision on PIL)."""
    from .finegrained import load_rgb      # here: finegrained imports this module
    return np.asarray(T.Resize((resize, resize))(load_rgb(path)), dtype=np.uint8)


def _fill(args) -> int:
    """Write rows ``lo..hi`` of the cache file (a worker's share of the build)."""
    path, shape, paths, lo, resize = args
    arr = np.memmap(path, dtype=np.uint8, mode="r+", shape=shape)
    for i, p in enumerate(paths):
        arr[lo + i] = _resized(p, resize)
    arr.flush()
    del arr
    return len(paths)


class ResizedImages:
    """The resized ID images of one preset, memory-mapped (module doc)."""

    def __init__(self, paths, resize: int, workers: int | None = None, progress: bool = True,
                 root=None):
        self.paths, self.resize = [Path(p) for p in paths], resize
        self.key = cache_key(self.paths, resize)
        self.shape = (len(self.paths), resize, resize, 3)
        self.index = {p: i for i, p in enumerate(self.paths)}
        root = cache_home() if root is None else root     # root: a cache home of its own
        if root is None:
            raise UserError("--decode cached needs a cache folder and LMOE_VIZ_CACHE is off; set "
                            "LMOE_VIZ_CACHE to a writable folder or use --decode pil")
        self.folder = Path(root) / "resized"
        self.file = self.folder / f"{self.key}.u8"
        self.meta = self.folder / f"{self.key}.json"
        if not self._complete():
            self._check_writable()
            with self._lock():
                if not self._complete():       # another builder may have finished meanwhile
                    self._check_free()
                    self._build(workers or min(os.cpu_count() or 1, 8), progress)
        self._arr = None

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))

    def _complete(self) -> bool:
        """Described by its .json, of the right size, and readable at both ends."""
        try:
            meta = json.loads(self.meta.read_text())
            if meta.get("shape") != list(self.shape) or self.file.stat().st_size != self.nbytes:
                return False
            with open(self.file, "rb") as f:
                first = f.read(1)
                f.seek(self.nbytes - 1)
                return len(first) == 1 and len(f.read(1)) == 1
        except (OSError, ValueError):
            return False

    @contextmanager
    def _lock(self):
        """Exclusive among the processes building this cache (module doc); says when it waits."""
        with open(self.folder / f"{self.key}.lock", "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"--decode cached: another process is building {self.file.name}; waiting for it",
                      flush=True)
                fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _build(self, workers: int, progress: bool) -> None:
        partial = self.file.with_name(f"{self.file.stem}.partial-{os.getpid()}")
        print(f"--decode cached: resizing {len(self.paths):,} ID images to {self.resize} px once, "
              f"{self.nbytes / 2**30:.2f} GiB in {self.folder}", flush=True)
        try:
            _reserve(partial, self.nbytes)
            tasks = [(str(partial), self.shape, self.paths[i:i + CHUNK], i, self.resize)
                     for i in range(0, len(self.paths), CHUNK)]
            bar = _bar(progress, len(self.paths))
            if workers <= 1 or len(tasks) <= 1:
                done = map(_fill, tasks)
                for n in done:
                    bar.update(n) if bar else None
            else:
                with ProcessPoolExecutor(workers) as pool:
                    for n in pool.map(_fill, tasks):
                        bar.update(n) if bar else None
            if bar:
                bar.close()
            os.replace(partial, self.file)
        except (OSError, BrokenProcessPool) as exc:     # a worker killed (SIGBUS, OOM) is the latter
            partial.unlink(missing_ok=True)
            why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise UserError(f"could not build the image cache in {self.folder} ({why}); "
                            f"it needs {self.nbytes / 2**30:.2f} GiB: free space there or set "
                            "LMOE_VIZ_CACHE to another folder, or use --decode pil") from None
        atomic_write_text(self.meta, json.dumps({"shape": list(self.shape), "resize": self.resize,
                                                 "images": len(self.paths)}) + "\n")

    def _check_writable(self) -> None:
        need = self.nbytes
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            probe = self.folder / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError:
            raise UserError(f"--decode cached: cache folder {self.folder} is not writable; it needs "
                            f"{need / 2**30:.2f} GiB: set LMOE_VIZ_CACHE to a writable folder or use "
                            "--decode pil") from None

    def _check_free(self) -> None:
        need = self.nbytes
        free = shutil.disk_usage(self.folder).free
        if free < need:
            raise UserError(f"--decode cached: {self.folder} has {free / 2**30:.2f} GiB free, the cache "
                            f"needs {need / 2**30:.2f} GiB: free space, set LMOE_VIZ_CACHE to a "
                            "larger disk, or use --decode pil")

    def image(self, path):
        """The resized image of ``path`` as a PIL image (the rest of the pipeline follows)."""
        if self._arr is None:           # opened lazily: each loader worker maps it itself
            try:
                self._arr = np.memmap(self.file, dtype=np.uint8, mode="r", shape=self.shape)
            except OSError as exc:
                raise UserError(f"--decode cached: cannot read {self.file} ({exc.strerror or exc}); "
                                "delete it to rebuild it, or use --decode pil") from None
        return Image.fromarray(np.asarray(self._arr[self.index[Path(path)]]))

    def __getstate__(self):             # loader workers get the description, not the map
        return {**self.__dict__, "_arr": None}


def _reserve(path: Path, nbytes: int) -> None:
    """Create ``path`` with ``nbytes`` allocated on the disk (posix_fallocate: ENOSPC now,
    rather than SIGBUS in a worker writing through the map of a sparse file)."""
    with open(path, "wb") as f:
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(f.fileno(), 0, nbytes)
        else:                               # macOS: sparse; the free-space check came first
            f.truncate(nbytes)


def _bar(enabled: bool, total: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc="resizing", unit="img", leave=False)
