"""The primary verdicts of both embedded presets side by side (README).

    python results/claims_primary.py

reads results/<preset>/claims_verdicts.csv (written by `lmoe-viz study`) and writes
results/claims_primary.md; `python results/update_readme.py` then copies it into the README.
"""
from pathlib import Path

import pandas as pd

from lmoe_viz.claims import side_by_side_markdown
from lmoe_viz.io import atomic_write_text

ROOT = Path(__file__).resolve().parent
PRESETS = ("digits", "fashion-mnist")

if __name__ == "__main__":
    tables = {p: pd.read_csv(ROOT / p / "claims_verdicts.csv") for p in PRESETS
              if (ROOT / p / "claims_verdicts.csv").is_file()}
    atomic_write_text(ROOT / "claims_primary.md", side_by_side_markdown(tables))
    print("wrote", ROOT / "claims_primary.md")
