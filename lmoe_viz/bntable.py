"""The BatchNorm table of the study (``lmoe-viz study --bn-table``): OE, MixOE and Logit
MixOE without / with L_LC, each trained under every BatchNorm regime (batchnorm.py) from
the study's first pretrained model, evaluated as trained and with BatchNorm recalibrated
on ID training data (the diagnostic of how much of a difference is BatchNorm)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .batchnorm import BN_REGIMES
from .config import RunConfig
from .errors import UserError
from .extract import extract
from .io import atomic_write_text
from .jobs import train_local
from .methods import MIXING, model_label
from .metrics import metrics_row
from .tables import to_markdown
from .train import finished, train

#: the models of the BatchNorm table, each trained under every regime
BN_TABLE_MODELS = (("oe", False),) + tuple((m, lc) for m in MIXING for lc in (False, True))


def bn_table_cells(study, alpha: float = 1.0, seed: int = 0) -> list[RunConfig]:
    """Each model of ``BN_TABLE_MODELS`` under each regime (alpha 1, seed 0 by default),
    from the study's first pretrained model (the study's own runs are reused)."""
    return [study.grid(0, bn).finetune_config(m, seed, lc, alpha)
            for bn in BN_REGIMES for m, lc in BN_TABLE_MODELS]


def bn_table(study, results_dir, jobs: int = 1, alpha: float = 1.0, seed: int = 0,
             device: str = "cpu", log=print) -> dict:
    """Train what the BatchNorm table needs, then write ``bn_table.csv`` / ``.md``: each
    model x regime, accuracy / AUROC / FPR95 (holdout, MSP), as trained and with BatchNorm
    recalibrated on ID training data (the diagnostic of how much is BatchNorm)."""
    cfg0, dir0 = study.pretrain_dirs()[0]
    train(cfg0, dir0, progress=False)
    cells = bn_table_cells(study, alpha, seed)
    todo = [c for c in cells if not finished(study.run_dir(c))]
    for name, seconds, error in train_local([(c.to_dict(), str(study.run_dir(c))) for c in todo], jobs):
        log(f"bn table: {name} {'FAILED (' + error + ')' if error else 'in'} {seconds:.0f} s")
    missing = [study.run_dir(c).name for c in cells if not finished(study.run_dir(c))]
    if missing:
        raise UserError(f"the BatchNorm table misses {len(missing)} run(s) ({', '.join(missing)}); "
                        "see the log above and rerun --bn-table")
    rows = []
    for cfg in cells:
        run = study.run_dir(cfg)
        row = {"model": model_label(cfg.method, cfg.lc), "bn": cfg.bn, "alpha": alpha, "seed": seed}
        for recal in (False, True):
            lg = extract(run / "checkpoint.pt", parts=("id_test", "ood_test"), data_root=study.data_root,
                         device=device, recalibrate_bn=recal, splits=study.splits)
            m = metrics_row(lg["id_test"], lg["ood_test"], "msp", "ours")
            tag = "_recal" if recal else ""
            row.update({f"accuracy{tag}": m["accuracy"], f"auroc{tag}": m["auroc"],
                        f"fpr95{tag}": m["fpr95"]})
        rows.append(row)
    df = pd.DataFrame(rows)
    results_dir = Path(results_dir)
    paths = {"bn_csv": results_dir / "bn_table.csv", "bn_md": results_dir / "bn_table.md"}
    atomic_write_text(paths["bn_csv"], df.to_csv(index=False))
    shown = pd.DataFrame({"model": df["model"], "--bn": df["bn"]})
    for tag, name in (("", "as trained"), ("_recal", "BN recalibrated")):
        shown[f"Acc. % ({name})"] = df[f"accuracy{tag}"].map("{:.2f}".format)
        shown[f"AUROC % ({name})"] = (100 * df[f"auroc{tag}"]).map("{:.2f}".format)
        shown[f"FPR95 % ({name})"] = (100 * df[f"fpr95{tag}"]).map("{:.2f}".format)
    atomic_write_text(paths["bn_md"], f"Preset {study.preset}, alpha {alpha:g}, seed {seed}, "
                      f"outliers {study.outliers}, holdout protocol, MSP; one seed: differences "
                      "below about a point are within seed noise.\n\n" + to_markdown(shown))
    return {k: str(v) for k, v in paths.items()}
