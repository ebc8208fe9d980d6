"""lmoe_viz: Logit Mixture Outlier Exposure, reproduced and analysed from saved logits."""
__version__ = "0.1.0"
