"""Counts of train / val / ID test / held-out test for splits 0-2 after `import-mixoe` of
MixOE's real info files (downloaded by you from github zjysteven/MixOE, info/ folder;
not shipped), with every image faked as an empty file: `python results/mixoe_split_counts.py
MIXOE_INFO_DIR`. Output: results/mixoe_split_counts.txt."""
import sys, tempfile, time, warnings
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import fakes
from lmoe_viz.data.mixoe_info import import_mixoe, IMAGE_PREFIXES
from lmoe_viz.data.finegrained import read_info
from lmoe_viz.config import RunConfig
from lmoe_viz.data import build_splits
root = Path(tempfile.mkdtemp()); info = Path(sys.argv[1])
fakes.webvision(root) if not (root / "webvision").exists() else None
for preset in ("bird", "aircraft", "butterfly", "car"):
    prefix = IMAGE_PREFIXES[preset][0]
    for s in ("train", "val", "test"):
        for rel, _ in read_info(info / preset / f"{s}.txt"):
            p = root / preset / prefix / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.touch()
    t = time.time()
    written = import_mixoe(preset, info, root)
    print(preset, "import-mixoe", [(w.name, sum(1 for _ in open(w))) for w in written], f"{time.time()-t:.1f}s")
    for split in (0, 1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sp = build_splits(RunConfig(preset=preset, data_root=str(root), split=split))
        print(f"  split {split}: train {len(sp.id_train)} val {len(sp.id_val)} id_test {len(sp.id_test)} heldout {len(sp.ood_test)} paper_id {32 * (len(sp.id_val) // 32)} dropped {sp.info['dropped_labels']}")
