"""Data: hold-out splits, presets, loaders. See presets.py for the registry."""
from .presets import PRESETS, Preset, Splits, build_splits, get_preset
from .splits import holdout_split, id_label_map

__all__ = ["PRESETS", "Preset", "Splits", "build_splits", "get_preset", "holdout_split",
           "id_label_map"]
