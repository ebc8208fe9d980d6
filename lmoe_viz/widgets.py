"""ipywidgets explorers that wrap plots.py.

Each explorer first draws a static figure of its initial state (so a notebook executed
headless with papermill shows the figure), then returns the interactive widget, which
redraws into its own output area when a control changes (in JupyterLab).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from scipy.special import softmax

from . import plots
from .losses import logit_mix
from .scores import SCORES, score


def _static(draw, *args):
    from IPython.display import display
    fig = plt.figure(figsize=(plots.COLUMN_WIDTH * 1.6, 2.8))
    draw(fig, *args)
    display(fig)
    plt.close(fig)


def _interactive(draw, controls: dict):
    import ipywidgets as w
    from IPython.display import display
    out = w.Output()

    def redraw(*_):
        with out:
            out.clear_output(wait=True)
            fig = plt.figure(figsize=(plots.COLUMN_WIDTH * 1.6, 2.8))
            draw(fig, *[c.value for c in controls.values()])
            display(fig)
            plt.close(fig)

    for c in controls.values():
        c.observe(redraw, names="value")
    return w.VBox([w.HBox(list(controls.values())), out])


def draw_beta(fig, alpha):
    plots.beta_densities([alpha], ax=fig.add_subplot(111))


def beta_explorer(alpha: float = 1.0):
    """An alpha slider over the density of Beta(alpha, alpha)."""
    import ipywidgets as w
    _static(draw_beta, alpha)
    return _interactive(draw_beta, {"alpha": w.FloatLogSlider(value=alpha, base=10, min=-1.3,
                                                              max=1.3, step=0.05, description="alpha")})


def draw_mix(fig, resp: dict, lam: float):
    """Left: the logit-space mix z~ at ``lam`` against the logits of the input-space mix
    (which needs a forward pass, so it stays at resp['lam']); right: softmax of z~ and MSP."""
    z_mix = logit_mix(resp["id"], resp["ood"], lam)
    ax1, ax2 = fig.subplots(1, 2)
    k = np.arange(len(z_mix))
    ax1.bar(k - 0.2, z_mix, 0.4, color=plots._PAL[3], label=f"z~ (lambda {lam:.2f})")
    ax1.bar(k + 0.2, resp["input_mix"], 0.4, color=plots._PAL[2],
            label=f"f(input mix, lambda {resp['lam']:.2f})")
    ax1.set_xlabel("ID class")
    ax1.set_ylabel("logit")
    ax1.legend(frameon=False, fontsize="x-small")
    p = softmax(np.asarray(z_mix, dtype=np.float64))
    ax2.bar(k, p, color=plots._PAL[3])
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("ID class")
    ax2.set_ylabel("softmax(z~)")
    ax2.set_title(f"MSP = {p.max():.3f}")
    fig.tight_layout()


def mix_explorer(resp: dict, lam: float | None = None):
    """A lambda slider for one ID/OOD pair: logit-space mix, its softmax and MSP, against
    the logits of the input-space mix (``resp`` from experiments.sample_responses)."""
    import ipywidgets as w
    lam = resp["lam"] if lam is None else lam
    _static(draw_mix, resp, lam)
    slider = w.FloatSlider(value=lam, min=0.0, max=1.0, step=0.05, description="lambda")
    return _interactive(lambda fig, v: draw_mix(fig, resp, v), {"lambda": slider})


def draw_model_view(fig, logits: dict, model: str, score_name: str):
    """Histogram of the chosen score (ID vs OOD) and the PCA of the logits for one model."""
    a, b = logits[model]
    ax1, ax2 = fig.subplots(1, 2)
    sa, sb = score(score_name, a), score(score_name, b)
    lo, hi = float(min(sa.min(), sb.min())), float(max(sa.max(), sb.max()))
    plots.norm_histogram(sa, sb, ax=ax1, label=model, value_range=(lo, hi + 1e-9), title=model)
    ax1.set_xlabel(f"score: {score_name}")
    pa, pb, _ = plots.pca_project(a, b)
    plots.logit_pca(pa, pb, ax=ax2, label=model)
    fig.tight_layout()


def model_score_picker(logits: dict, model: str | None = None, score_name: str = "l2norm"):
    """Pick a model and a score; shows the score histogram and the logit PCA."""
    import ipywidgets as w
    model = model or next(iter(logits))
    _static(lambda fig: draw_model_view(fig, logits, model, score_name))
    controls = {"model": w.Dropdown(options=list(logits), value=model, description="model"),
                "score": w.Dropdown(options=list(SCORES), value=score_name, description="score")}
    return _interactive(lambda fig, m, s: draw_model_view(fig, logits, m, s), controls)
