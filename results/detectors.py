"""Trained method x post-hoc detector on the embedded presets (detectors.py, pytorch-ood):
AUROC and FPR95 (holdout protocol: ID test vs the held-out classes; convention ``ours``)
of each model of a grid under every logit score and detector.

    python results/detectors.py digits                      # trains its digits grid (minutes)
    python results/detectors.py fashion-mnist RUNS_DIR      # the study's runs of one pretrained model

digits: pretrained, OE, MixOE and Logit MixOE without / with L_LC, alpha 1, seed 0,
BatchNorm id-stats, the preset's epochs, trained into out/detectors/digits.
fashion-mnist: the same models from the claims study (``lmoe-viz study ... --out
out/study/fashion-mnist``: RUNS_DIR = out/study/fashion-mnist/runs/p0; matched outliers,
id-stats, unit 0). Writes results/detectors/<preset>.md and .csv. CPU numbers: another
machine may differ in the last digits.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from lmoe_viz.detectors import DETECTORS
from lmoe_viz.grid import Grid
from lmoe_viz.machine import cpu_cores, cpu_model
from lmoe_viz.scores import SCORES
from lmoe_viz.tables import detector_table, formatted_detector_table, to_markdown

OUT = Path(__file__).with_name("detectors")


def main(preset: str, runs_dir: str | None = None) -> None:
    grid = Grid(preset=preset, runs_dir=runs_dir or f"out/detectors/{preset}", alphas=(1.0,),
                seeds=(0,), bn="id-stats", outliers="matched" if runs_dir else "crops",
                device="cpu", channels_last=bool(runs_dir))
    t0 = time.time()
    if runs_dir is None:
        grid.run(progress=False)
    scores = [*SCORES, *DETECTORS]
    tables = {m: detector_table(grid.table, scores, m) for m in ("auroc", "fpr95")}
    seconds = time.time() - t0
    OUT.mkdir(exist_ok=True)
    long = tables["auroc"].melt(id_vars=["alpha", "model"], var_name="score", value_name="auroc")
    long["fpr95"] = tables["fpr95"].melt(id_vars=["alpha", "model"], value_name="v")["v"]
    long.to_csv(OUT / f"{preset}.csv", index=False)
    shown = {m: formatted_detector_table(t) for m, t in tables.items()}
    shown_dir = f" {Path(runs_dir).relative_to(Path(runs_dir).parents[4])}" if runs_dir else ""
    source = (f"`python results/detectors.py {preset}{shown_dir}`"
              f" on {cpu_model()}, {cpu_cores()} cores, {seconds / 60:.1f} min")
    text = (f"# Trained method x detector, {preset}\n\nCommand: {source}. Holdout protocol (ID "
            "test vs the held-out classes), convention `ours`, one seed (seed 0, one pretrained "
            "model): differences below a few points are within seed noise. Logit scores: "
            f"{', '.join(SCORES)}; pytorch-ood 0.4 detectors: {', '.join(DETECTORS)} "
            "(feature detectors fitted on the un-augmented ID training images).\n\n"
            "AUROC (%):\n\n" + to_markdown(shown["auroc"]) + "\n\nFPR95 (%):\n\n"
            + to_markdown(shown["fpr95"]) + "\n")
    (OUT / f"{preset}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
