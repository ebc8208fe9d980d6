"""Plot functions tested by what they drew (patches, lines, labels, legends), not pixels."""
import matplotlib.pyplot as plt
import numpy as np
import pytest

from lmoe_viz import plots


@pytest.fixture
def logits():
    rng = np.random.RandomState(0)
    return {"Pretrained": (rng.randn(50, 4) * 5, rng.randn(30, 4)),
            "Logit MixOE w/ L_LC": (rng.randn(50, 4) * 2, rng.randn(30, 4) * 0.5)}


def test_norm_histogram(logits):
    a, b = logits["Pretrained"]
    ax = plots.norm_histogram(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1),
                              label="Pretrained", bins=10)
    assert len(ax.patches) == 10 + 1          # ID bars + one OOD step outline
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ID test", "OOD test"]
    assert ax.get_title() == "Pretrained" and "norm" in ax.get_xlabel()
    assert ax.patches[0].get_facecolor()[:3] == pytest.approx(plots.model_colors()["Pretrained"])


def test_norm_histogram_grid_shares_range(logits):
    """Every panel bins the same range, wide enough for the largest norm of any model:
    the bars themselves (not the shared x axis) start and end at the same places."""
    fig = plots.norm_histogram_grid(logits, bins=8)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == list(logits)
    edges = [[round(p.get_x(), 9) for p in ax.patches[:8]] for ax in axes]
    assert edges[0] == edges[1]
    widths = {round(p.get_width(), 9) for ax in axes for p in ax.patches[:8]}
    assert len(widths) == 1
    largest = max(float(np.linalg.norm(a, axis=1).max()) for a, _ in logits.values())
    assert edges[0][0] == 0.0 and edges[0][-1] + widths.pop() >= largest


def test_logit_pca_grid_common_scale(logits):
    fig = plots.logit_pca_grid(logits)
    axes = fig.axes
    assert len(axes) == 2 and axes[0].get_xlim() == axes[1].get_xlim() == axes[0].get_ylim()
    assert len(axes[0].collections) == 2 and axes[0].get_xlabel() == "PC 1"
    # the shrunken model occupies a smaller part of the common axes
    spread = [np.abs(ax.collections[0].get_offsets()).max() for ax in axes]
    assert spread[1] < spread[0]


def test_sample_logit_responses_bars():
    resp = {"id": np.array([3.0, -1.0, 0.0]), "ood": np.zeros(3), "input_mix": np.ones(3),
            "logit_mix": np.array([1.5, -0.5, 0.0]), "lam": 0.5}
    ax = plots.sample_logit_responses(resp)
    assert len(ax.patches) == 4 * 3
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [n for _, n in plots.RESPONSE_SERIES]
    heights = [p.get_height() for p in ax.patches]
    assert heights[:3] == [3.0, -1.0, 0.0] and heights[9:] == [1.5, -0.5, 0.0]


def test_beta_densities_and_lambda_histogram():
    ax = plots.beta_densities([0.3, 1.0, 3.0])
    assert len(ax.lines) == 3
    assert ax.lines[1].get_ydata() == pytest.approx(np.ones(400))       # Beta(1, 1) is uniform
    assert [t.get_text() for t in ax.get_legend().get_texts()][2] == "alpha = 3"
    plt.figure()
    ax = plots.lambda_histogram(np.random.RandomState(0).beta(2, 2, 100), 2.0, bins=10)
    assert len(ax.patches) == 10 and len(ax.lines) == 1 and ax.get_title() == "alpha = 2"


def test_save_figure_png_and_pdf(tmp_path):
    fig, ax = plt.subplots()
    plots.beta_densities([1.0], ax=ax)
    paths = plots.save_figure(fig, tmp_path, "f")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)


def test_each_model_is_drawn_in_its_own_colour():
    """What the figures draw: the six models' ID bars pairwise distinct and none in the
    OOD colour; an unknown label (an adaptive L_LC) still gets a colour."""
    drawn = []
    for label in list(plots.model_colors()) + ["Logit MixOE w/ L_LC (norm)"]:
        fig, ax = plt.subplots()
        plots.norm_histogram(np.ones(5), np.ones(5) * 2, ax=ax, label=label, bins=3)
        drawn.append(tuple(np.round(ax.patches[0].get_facecolor()[:3], 4)))
        plt.close(fig)
    assert len(set(drawn[:6])) == 6
    ood = tuple(np.round(plt.matplotlib.colors.to_rgb(plots.OOD_COLOR), 4))
    assert ood not in drawn
