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
parallel into a ``.partial-*`` file of its own (a unique name; its whole size reserved on
the disk first, so a disk that fills up is an error before any row is written, never a
crash mid-build; removed however the build ends), linked in as the cache when complete
(never replacing a cache another process may have mapped, unless that one was found
unreadable), and only then described by its ``.json``: an interrupted build, or a cache
file that cannot be read, is never trusted (it is rebuilt). Builders of one cache (DDP
ranks, a local sweep, array jobs on one shared folder) take turns under an exclusive lock
on ``<key>.lock``: the first builds, the others wait and then read what it built; the
lock's holder also removes partial files that killed builders left. Where the folder
refuses a lock (a lock file of another user, NFS without lock support) a warning says so
and the build goes on unlocked. A folder that cannot be written, or a disk without room
for it, is refused in one line before anything trains.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import tempfile
import warnings
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
            with self._lock() as locked:
                if not self._complete():       # another builder may have finished meanwhile
                    if locked:                 # no other builder alive: its leftovers go
                        for stale in self.folder.glob(f"{self.key}.partial-*"):
                            stale.unlink(missing_ok=True)
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
        except (OSError, ValueError):
            return False
        return meta.get("shape") == list(self.shape) and _readable(self.file, self.nbytes)

    @contextmanager
    def _lock(self):
        """Exclusive among the processes building this cache (module doc); says when it
        waits. Yields whether it holds the lock (False: the folder refused one, warned)."""
        path = self.folder / f"{self.key}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            warnings.warn(f"--decode cached: cannot open the lock file {path} ({exc.strerror}); "
                          "building without it", stacklevel=3)
            yield False
            return
        try:
            yield _flock(fd, path, self.file.name)
        finally:
            os.close(fd)                    # releases the lock

    def _build(self, workers: int, progress: bool) -> None:
        print(f"--decode cached: resizing {len(self.paths):,} ID images to {self.resize} px once, "
              f"{self.nbytes / 2**30:.2f} GiB in {self.folder}", flush=True)
        fd, name = tempfile.mkstemp(dir=self.folder, prefix=f"{self.key}.partial-")
        os.close(fd)
        partial = Path(name)
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
            self._publish(partial)
        except (OSError, BrokenProcessPool) as exc:     # a worker killed (SIGBUS, OOM) is the latter
            why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise UserError(f"could not build the image cache in {self.folder} ({why}); "
                            f"it needs {self.nbytes / 2**30:.2f} GiB: free space there or set "
                            "LMOE_VIZ_CACHE to another folder, or use --decode pil") from None
        finally:                            # however it ends (Ctrl-C too): no partial left
            partial.unlink(missing_ok=True)
        atomic_write_text(self.meta, json.dumps({"shape": list(self.shape), "resize": self.resize,
                                                 "images": len(self.paths)}) + "\n")

    def _publish(self, partial: Path) -> None:
        """The finished partial becomes the cache: a hard link, so a cache another builder
        published meanwhile (an unlocked folder) is kept, not swapped under its readers'
        maps; a cache file found unreadable is replaced. Readable by all the umask allows
        (mkstemp made the partial private)."""
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(partial, 0o666 & ~umask)
        try:
            os.link(partial, self.file)
        except FileExistsError:
            if not _readable(self.file, self.nbytes):
                os.replace(partial, self.file)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            os.replace(partial, self.file)  # a file system without hard links

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


def _readable(path: Path, nbytes: int) -> bool:
    """``path`` holds ``nbytes`` bytes and its first and last can be read."""
    try:
        if path.stat().st_size != nbytes:
            return False
        with open(path, "rb") as f:
            first = f.read(1)
            f.seek(nbytes - 1)
            return len(first) == 1 and len(f.read(1)) == 1
    except OSError:
        return False


def _flock(fd: int, path: Path, what: str) -> bool:
    """Take the exclusive lock on ``fd``, saying when it waits; False (warned) where the
    file system refuses locks."""
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"--decode cached: another process is building {what}; waiting for it", flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    except OSError as exc:
        warnings.warn(f"--decode cached: {path} cannot be locked here ({exc.strerror}); building "
                      "without the lock", stacklevel=4)
        return False


def _reserve(path: Path, nbytes: int) -> None:
    """Create ``path`` with ``nbytes`` allocated on the disk (posix_fallocate: ENOSPC now,
    rather than SIGBUS in a worker writing through the map of a sparse file)."""
    with open(path, "wb") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, nbytes)
            return
        except AttributeError:              # macOS has none
            pass
        except OSError as exc:              # a file system that cannot reserve (EINVAL, ENOTSUP)
            if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
        f.truncate(nbytes)                  # sparse: the free-space check came first


def _bar(enabled: bool, total: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc="resizing", unit="img", leave=False)
