"""Pure figure functions: arrays in, Axes (or Figure for grids) out; nothing calls show().

Conventions (STYLE.md): ``ax=None`` falls back to the current Axes; one colour per model
across all figures (:func:`model_colors`, seaborn's colour-blind-safe palette); figures
sized for a paper column (3.5 in wide per panel) and saved at print resolution.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from scipy.stats import beta as beta_dist

from .io import ensure_dir
from .methods import METHODS, model_label
from .sampling import sample_rows

PALETTE = sns.color_palette("colorblind", 10)
_PAL = PALETTE                      # the name claimplots.py imports
OOD_COLOR = "0.15"
COLUMN_WIDTH = 3.5   # inches
DPI = 300


def model_colors() -> dict:
    """{model label: colour}, from each method's registry entry (methods.Method.colors),
    read when called, so a method registered later has its colour too."""
    return {model_label(n, lc): PALETTE[i] for n, m in METHODS.items()
            for lc, i in zip((False, True), m.colors) if i is not None}


def model_color(label: str):
    """A model's colour; one without (CE fine-tune, Energy-OE, adaptive L_LC) takes PALETTE[9]."""
    return model_colors().get(label, PALETTE[9])


def _ax(ax):
    return ax if ax is not None else plt.gca()


def norm_histogram(id_norms, ood_norms, ax=None, label: str = "model", bins: int = 40,
                   value_range=None, title: str | None = None):
    """Histograms of ||z||_2 for ID test (filled, model colour) and OOD test (outline) (Fig. 3)."""
    ax = _ax(ax)
    lo = value_range or (0.0, float(max(np.max(id_norms), np.max(ood_norms))) * 1.02)
    ax.hist(id_norms, bins=bins, range=lo, density=True, color=model_color(label), alpha=0.6,
            label="ID test")
    ax.hist(ood_norms, bins=bins, range=lo, density=True, histtype="step", color=OOD_COLOR,
            linewidth=1.2, label="OOD test")
    ax.set_xlabel("logit L2 norm ||z||")
    ax.set_ylabel("density")
    ax.set_title(title or label)
    ax.legend(frameon=False, fontsize="small")
    return ax


def norm_histogram_grid(logits: dict, bins: int = 40):
    """One panel per model (``{label: (id_logits, ood_logits)}``) on a shared x range."""
    norms = {k: (np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)) for k, (a, b) in logits.items()}
    hi = max(max(a.max(), b.max()) for a, b in norms.values()) * 1.02
    fig, axes = plt.subplots(1, len(norms), figsize=(COLUMN_WIDTH * len(norms) * 0.75, 2.6),
                             sharex=True, squeeze=False, constrained_layout=True)
    for ax, (label, (a, b)) in zip(axes[0], norms.items()):
        norm_histogram(a, b, ax=ax, label=label, bins=bins, value_range=(0.0, hi))
    fig.suptitle("Logit norms, ID test vs OOD test (cf. paper Fig. 3)")
    return fig


def pca_project(id_logits, ood_logits):
    """2-D PCA fitted on the ID and OOD logits together; returns both projections."""
    from sklearn.decomposition import PCA
    both = np.concatenate([id_logits, ood_logits])
    p = PCA(n_components=2).fit(both)
    return p.transform(id_logits), p.transform(ood_logits), p.explained_variance_ratio_


def logit_pca(id_2d, ood_2d, ax=None, label: str = "model", lim: float | None = None,
              max_points: int = 2000, id_labels=None):
    """Scatter of 2-D PCA coordinates of logits, ID (model colour) vs OOD (dark) (Fig. 4).

    At most ``max_points`` of each: a seeded sample (sampling.py), stratified by class when
    ``id_labels`` are given, never the first rows (the first classes of a test list)."""
    ax = _ax(ax)
    i = sample_rows(len(id_2d), max_points, labels=id_labels)
    o = sample_rows(len(ood_2d), max_points)
    ax.scatter(id_2d[i, 0], id_2d[i, 1], s=4, alpha=0.5,
               color=model_color(label), label="ID test", rasterized=True)
    ax.scatter(ood_2d[o, 0], ood_2d[o, 1], s=4, alpha=0.5, marker="x",
               color=OOD_COLOR, label="OOD test", rasterized=True)
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(label)
    ax.legend(frameon=False, fontsize="small", markerscale=3)
    return ax


def pca_limit(logits: dict) -> float:
    """The common axis half-width of the per-model PCA plots (Fig. 4's one scale)."""
    proj = (pca_project(a, b)[:2] for a, b in logits.values())
    return max(float(np.abs(np.concatenate([a, b])).max()) for a, b in proj) * 1.05


def legend_below(ax, ncol: int = 2):
    """The legend under the axes, outside the data (bars reach every height)."""
    ax.legend(frameon=False, fontsize="x-small", ncol=ncol, loc="upper center",
              bbox_to_anchor=(0.5, -0.22))


def logit_pca_grid(logits: dict):
    """PCA per model with one common axis scale, so shrinking logits are visible."""
    proj = {k: pca_project(a, b)[:2] for k, (a, b) in logits.items()}
    lim = pca_limit(logits)
    fig, axes = plt.subplots(1, len(proj), figsize=(COLUMN_WIDTH * len(proj) * 0.75, 2.9),
                             squeeze=False, constrained_layout=True)
    for ax, (label, (a, b)) in zip(axes[0], proj.items()):
        logit_pca(a, b, ax=ax, label=label, lim=lim)
    fig.suptitle("PCA of logits, common scale (cf. paper Fig. 4)")
    return fig


RESPONSE_SERIES = (("id", "ID sample"), ("ood", "OOD sample"),
                   ("input_mix", "f(input mix)"), ("logit_mix", "logit mix z~"))


def sample_logit_responses(resp: dict, ax=None, title: str | None = None):
    """Grouped bars over classes: logits of an ID sample, an OOD sample, their input-space
    mix and their logit-space mix at ``resp['lam']`` (Figs. 5-6)."""
    ax = _ax(ax)
    k = len(resp["id"])
    width = 0.8 / len(RESPONSE_SERIES)
    colors = [PALETTE[0], OOD_COLOR, PALETTE[2], PALETTE[3]]
    for j, ((key, name), c) in enumerate(zip(RESPONSE_SERIES, colors)):
        ax.bar(np.arange(k) + (j - 1.5) * width, resp[key], width=width, color=c, label=name)
    ax.axhline(0, color="0.5", linewidth=0.6)
    ax.set_xticks(np.arange(k))
    ax.set_xlabel("ID class")
    ax.set_ylabel("logit")
    ax.set_title(title or f"logits at lambda = {resp['lam']:.2f}")
    legend_below(ax)
    return ax


def beta_densities(alphas, ax=None, grid: int = 400, fmt: str = "g"):
    """Densities of Beta(alpha, alpha) for each alpha (Fig. 7). The y range shows every
    curve inside the axes, up to 6 (the U-shaped densities of small alpha diverge at 0 and
    1), and at least 0..2, so alpha = 1's flat density 1 sits mid-height, not on a spine."""
    ax = _ax(ax)
    x = np.linspace(0.002, 0.998, grid)
    pal = sns.color_palette("viridis", len(alphas))
    top = 0.0
    for a, c in zip(alphas, pal):
        y = beta_dist.pdf(x, a, a)
        top = max(top, float(np.max(y)))
        ax.plot(x, y, color=c, label=f"alpha = {format(a, fmt)}")
    ax.set_ylim(0, min(6.0, max(2.0, 1.15 * top)))
    ax.set_xlabel("lambda")
    ax.set_ylabel("density")
    ax.set_title("Beta(alpha, alpha)")
    ax.legend(frameon=False, fontsize="small")
    return ax


def lambda_histogram(lambdas, alpha: float, ax=None, bins: int = 20):
    """Histogram of the lambdas drawn during training, with the Beta density over it."""
    ax = _ax(ax)
    ax.hist(lambdas, bins=bins, range=(0, 1), density=True, color=PALETTE[0], alpha=0.6,
            label=f"drawn (n = {len(lambdas)})")
    x = np.linspace(0.002, 0.998, 200)
    ax.plot(x, beta_dist.pdf(x, alpha, alpha), color=OOD_COLOR, label="Beta density")
    ax.set_ylim(0, 6.0)
    ax.set_xlabel("lambda")
    ax.set_ylabel("density")
    ax.set_title(f"alpha = {alpha:g}")
    ax.legend(frameon=False, fontsize="x-small")
    return ax


def show(fig) -> None:
    """Display ``fig`` once in a notebook, as a PNG rendered here (so it shows whatever the
    matplotlib backend, ``MPLBACKEND=Agg`` included), and close it so that the inline
    backend does not show it a second time at the end of the cell."""
    import io

    from IPython.display import Image, display
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    display(Image(data=buf.getvalue(), format="png"))


def save_figure(fig, out_dir, name: str) -> list[Path]:
    """Save ``fig`` as PNG and PDF at print resolution; returns the paths."""
    out_dir = Path(out_dir)
    ensure_dir(out_dir)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=DPI, bbox_inches="tight")
    return paths
