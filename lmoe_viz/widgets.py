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
import textwrap

import matplotlib.pyplot as plt
import numpy as np
from scipy.special import softmax

from . import plots
from .detectors import DETECTORS
from .errors import UserError
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
    """Draw the density of Beta(alpha, alpha) on ``fig`` (plots.beta_densities): beta_explorer's
    figure."""
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


def score_label(name: str) -> str:
    """The axis label of a logit score (scores.py) or a post-hoc detector (detectors.py)."""
    return SCORES[name].label if name in SCORES else DETECTORS[name].label


def draw_model_view(fig, logits: dict, model: str, score_name: str, lim: float | None = None,
                    scores: dict | None = None):
    """Histogram of the chosen score or detector (ID vs OOD) and the PCA of the logits for
    one model, on the common PCA scale ``lim`` of all models (Fig. 4's) when given.
    ``scores``: ``{model: {name: (ID, OOD) scores}}`` of the detectors (grid.figure_scores);
    an entry that is a string says why the model has no such scores, and is shown."""
    a, b = logits[model]
    ax1, ax2 = fig.subplots(1, 2)
    got = (score(score_name, a), score(score_name, b)) if score_name in SCORES \
        else (scores or {}).get(model, {}).get(score_name, f"no {score_name} scores for {model}")
    if isinstance(got, str):
        ax1.text(0.5, 0.5, textwrap.fill(got, 40), ha="center", va="center", fontsize=7,
                 transform=ax1.transAxes)
        ax1.set_axis_off()
    else:
        sa, sb = (np.asarray(v, dtype=np.float64) for v in got)
        lo, hi = float(min(sa.min(), sb.min())), float(max(sa.max(), sb.max()))
        plots.norm_histogram(sa, sb, ax=ax1, label=model, value_range=(lo, hi + 1e-9), title=model)
        ax1.set_xlabel(f"score: {score_label(score_name)}")
    pa, pb, _ = plots.pca_project(a, b)
    plots.logit_pca(pa, pb, ax=ax2, label=model, lim=lim)
    fig.tight_layout()


def model_score_picker(logits: dict, model: str | None = None, score_name: str = "l2norm",
                       scores: dict | None = None):
    """Pick a model and a score; shows the score histogram and the logit PCA, the latter on
    one scale for every model (plots.pca_limit), so shrinking logits stay visible. The menu
    holds the logit scores of scores.py and the detectors of ``scores``
    (grid.figure_scores: ``{model: {detector: (ID, OOD) scores}}``)."""
    import ipywidgets as w
    model = model or next(iter(logits))
    lim = plots.pca_limit(logits)
    extra = [n for per in (scores or {}).values() for n in per if n not in SCORES]
    options = list(SCORES) + list(dict.fromkeys(extra))
    if score_name not in options:
        raise UserError(f"score {score_name!r} is not in the picker; choose one of "
                        f"{', '.join(options)} (detectors: pass scores=grid.figure_scores(...))")
    controls = {"model": w.Dropdown(options=list(logits), value=model, description="model"),
                "score": w.Dropdown(options=options, value=score_name, description="score")}
    return _explorer(lambda fig, m, s: draw_model_view(fig, logits, m, s, lim, scores), controls)
