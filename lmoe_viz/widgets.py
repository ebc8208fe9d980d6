"""ipywidgets explorers that wrap plots.py.

Each explorer is one output holding one figure that redraws in place: its controls above an
``Output`` where the figure of the current state is drawn (the initial state at once). The
explorer's display bundle also carries a PNG of the state it was built in, so a saved
notebook viewed without a kernel (or untrusted, or on GitHub) shows that figure instead of
``VBox(...)``; a live JupyterLab renders the widget, never both.
"""
from __future__ import annotations

import base64
import io

import matplotlib.pyplot as plt
import numpy as np
from scipy.special import softmax

from . import plots
from .losses import logit_mix
from .scores import SCORES, score

#: explorer figure size (inches): one and a half columns of the paper
FIGSIZE = (plots.COLUMN_WIDTH * 1.6, 3.0)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _explorer(draw, controls: dict):
    """A VBox of the controls and one Output whose figure ``draw(fig, *values)`` redraws
    when a control changes; its bundle adds the initial figure as image/png (module doc)."""
    import ipywidgets as w

    class Explorer(w.VBox):
        def _repr_mimebundle_(self, **kwargs):
            bundle = super()._repr_mimebundle_(**kwargs)
            bundle["image/png"] = self.snapshot
            return bundle

    out = w.Output()

    def redraw(*_):
        fig = plt.figure(figsize=FIGSIZE)
        draw(fig, *[c.value for c in controls.values()])
        png = _png(fig)
        plt.close(fig)
        box.snapshot = box.snapshot or png
        box.figures += 1
        # the Output holds exactly this one figure (replaced, never appended)
        out.outputs = ({"output_type": "display_data", "metadata": {},
                        "data": {"image/png": png, "text/plain": "<Figure>"}},)

    box = Explorer([w.HBox(list(controls.values())), out])
    box.snapshot, box.figures = None, 0
    for c in controls.values():
        c.observe(redraw, names="value")
    redraw()
    return box


#: the alpha slider's readout format; the legend rounds alpha the same way
ALPHA_FORMAT = ".3g"


def draw_beta(fig, alpha):
    plots.beta_densities([alpha], ax=fig.add_subplot(111), fmt=ALPHA_FORMAT)
    fig.tight_layout()


def beta_explorer(alpha: float = 1.0):
    """An alpha slider over the density of Beta(alpha, alpha)."""
    import ipywidgets as w
    return _explorer(draw_beta, {"alpha": w.FloatLogSlider(
        value=alpha, base=10, min=-1.3, max=1.3, step=0.05, description="alpha",
        readout_format=ALPHA_FORMAT)})


def draw_mix(fig, resp: dict, lam: float):
    """Left: the logit-space mix z~ at ``lam`` against the logits of the input-space mix
    (which needs a forward pass, so it stays at resp['lam']); right: softmax of z~ and MSP."""
    z_mix = logit_mix(resp["id"], resp["ood"], lam)
    ax1, ax2 = fig.subplots(1, 2)
    k = np.arange(len(z_mix))
    ax1.bar(k - 0.2, z_mix, 0.4, color=plots.PALETTE[3], label=f"z~ (lambda {lam:.2f})")
    ax1.bar(k + 0.2, resp["input_mix"], 0.4, color=plots.PALETTE[2],
            label=f"f(input mix, lambda {resp['lam']:.2f})")
    ax1.set_xlabel("ID class")
    ax1.set_ylabel("logit")
    plots.legend_below(ax1, ncol=1)
    p = softmax(np.asarray(z_mix, dtype=np.float64))
    ax2.bar(k, p, color=plots.PALETTE[3])
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("ID class")
    ax2.set_ylabel("softmax(z~)")
    ax2.set_title(f"MSP = {p.max():.3f}")
    fig.tight_layout()


def mix_explorer(resp: dict, lam: float | None = None):
    """A lambda slider for one ID/OOD pair: logit-space mix, its softmax and MSP, against
    the logits of the input-space mix (``resp`` from responses.sample_responses)."""
    import ipywidgets as w
    lam = resp["lam"] if lam is None else lam
    slider = w.FloatSlider(value=lam, min=0.0, max=1.0, step=0.05, description="lambda")
    return _explorer(lambda fig, v: draw_mix(fig, resp, v), {"lambda": slider})


def draw_model_view(fig, logits: dict, model: str, score_name: str, lim: float | None = None):
    """Histogram of the chosen score (ID vs OOD) and the PCA of the logits for one model,
    on the common PCA scale ``lim`` of all models (Fig. 4's) when given."""
    a, b = logits[model]
    ax1, ax2 = fig.subplots(1, 2)
    sa, sb = score(score_name, a), score(score_name, b)
    lo, hi = float(min(sa.min(), sb.min())), float(max(sa.max(), sb.max()))
    plots.norm_histogram(sa, sb, ax=ax1, label=model, value_range=(lo, hi + 1e-9), title=model)
    ax1.set_xlabel(f"score: {SCORES[score_name].label}")
    pa, pb, _ = plots.pca_project(a, b)
    plots.logit_pca(pa, pb, ax=ax2, label=model, lim=lim)
    fig.tight_layout()


def model_score_picker(logits: dict, model: str | None = None, score_name: str = "l2norm"):
    """Pick a model and a score; shows the score histogram and the logit PCA, the latter on
    one scale for every model (plots.pca_limit), so shrinking logits stay visible."""
    import ipywidgets as w
    model = model or next(iter(logits))
    lim = plots.pca_limit(logits)
    controls = {"model": w.Dropdown(options=list(logits), value=model, description="model"),
                "score": w.Dropdown(options=list(SCORES), value=score_name, description="score")}
    return _explorer(lambda fig, m, s: draw_model_view(fig, logits, m, s, lim), controls)
