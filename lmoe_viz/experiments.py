"""The names notebooks and scripts imported from here before issue 16, kept so that they
still work (notebook 07 among them). New code imports from the module that holds each:
grid.py (grids of runs), tables.py (results tables), responses.py (Figs. 5-6),
methods.py (model labels)."""
from .grid import FIGURE_MODELS, NOTEBOOK_PARAMS, PRETRAINED, Grid, cell_name, figure_logits
from .methods import model_label
from .responses import sample_responses
from .tables import (PAPER_DATASETS, REFERENCE_TABLE, best_rows, export_table,
                     formatted_table, mean_std_over_seeds, paper_table, results_table,
                     summary_table, to_latex, to_markdown, with_paper)

__all__ = ["FIGURE_MODELS", "NOTEBOOK_PARAMS", "PRETRAINED", "Grid", "cell_name", "figure_logits",
           "model_label", "sample_responses", "PAPER_DATASETS", "REFERENCE_TABLE", "best_rows",
           "export_table", "formatted_table", "mean_std_over_seeds", "paper_table",
           "results_table", "summary_table", "to_latex", "to_markdown", "with_paper"]
