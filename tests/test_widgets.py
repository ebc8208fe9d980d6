"""The explorers: one figure each, replaced in place on every control change; the Beta
explorer readable at every alpha; the PCA view on the common scale; no legend on data."""
import base64
import io

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from lmoe_viz import plots, widgets


def _resp():
    return {"id": np.array([3.0, 0.0, -1.0]), "ood": np.array([0.5, 0.2, 0.1]),
            "input_mix": np.array([1.0, 0.1, 0.0]), "lam": 0.5}


def _image(box):
    """The one figure the explorer's Output holds now, as pixels."""
    (out,) = [c for c in box.children if c.__class__.__name__ == "Output"]
    assert len(out.outputs) == 1
    png = out.outputs[0]["data"]["image/png"]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(png))))


def test_mix_explorer_redraws_one_figure_in_place(monkeypatch):
    box = widgets.mix_explorer(_resp())
    slider = box.children[0].children[0]
    assert slider.description == "lambda" and slider.value == 0.5
    first = _image(box)
    calls = []
    real = widgets.draw_mix
    monkeypatch.setattr(widgets, "draw_mix", lambda fig, resp, lam: (calls.append(lam), real(fig, resp, lam)))
    slider.value = 0.9
    assert calls == [0.9] and box.figures == 2
    assert not np.array_equal(_image(box), first)          # the figure shows the new state
    # a saved notebook without a kernel shows the initial figure, not VBox(...)
    bundle = box._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(bundle["image/png"])))), first)


def test_draw_mix_shows_msp_and_keeps_the_legend_off_the_bars():
    fig = plt.figure()
    widgets.draw_mix(fig, _resp(), 1.0)
    ax1, ax2 = fig.axes
    assert len(ax1.patches) == 6
    p = np.exp(_resp()["id"]) / np.exp(_resp()["id"]).sum()
    assert ax2.get_title() == f"MSP = {p.max():.3f}"
    _assert_legend_outside(fig, ax1)


def _assert_legend_outside(fig, ax):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    leg = ax.get_legend().get_window_extent(renderer)
    assert leg.y1 <= ax.get_window_extent(renderer).y0 + 1e-6


def test_sample_response_legend_covers_no_bar():
    fig, ax = plt.subplots(constrained_layout=True)
    r = {**_resp(), "logit_mix": np.array([1.8, 0.1, -0.45])}
    plots.sample_logit_responses(r, ax=ax)
    _assert_legend_outside(fig, ax)


def test_beta_explorer_is_visible_at_every_alpha_and_legend_rounds_like_the_slider():
    for alpha in (0.06, 1.0, 19.9):
        fig = plt.figure()
        widgets.draw_beta(fig, alpha)
        ax = fig.axes[0]
        y = ax.lines[0].get_ydata()
        lo, hi = ax.get_ylim()
        visible = y[(y >= lo) & (y <= hi)]
        assert len(visible) > len(y) / 2
        assert np.median(visible) < hi * 0.9, alpha        # not drawn along the top spine
    box = widgets.beta_explorer(1.0)
    slider = box.children[0].children[0]
    slider.value = 1.1220184543019633                      # a log-slider step
    fig = plt.figure()
    widgets.draw_beta(fig, slider.value)
    label = fig.axes[0].get_legend().get_texts()[0].get_text()
    assert label == "alpha = " + format(slider.value, slider.readout_format) == "alpha = 1.12"


def test_model_picker_keeps_one_pca_scale_for_every_model():
    rng = np.random.RandomState(0)
    logits = {"big": (rng.randn(40, 3) * 10, rng.randn(20, 3) * 10),
              "small": (rng.randn(40, 3), rng.randn(20, 3))}
    lim = plots.pca_limit(logits)
    box = widgets.model_score_picker(logits)
    model, score = box.children[0].children
    assert list(model.options) == ["big", "small"] and "energy" in score.options
    before = _image(box)
    model.value = "small"
    assert box.figures == 2 and not np.array_equal(_image(box), before)
    for name in logits:
        fig = plt.figure()
        widgets.draw_model_view(fig, logits, name, "msp", lim)
        assert fig.axes[1].get_xlim() == (-lim, lim)     # the PCA axes, not rescaled per model


def test_model_picker_lists_the_detectors_it_is_given_and_says_why_one_is_missing():
    """grid.figure_scores' mapping: a detector's arrays are drawn as given (not recomputed
    from the logits), and a model without them shows the reason instead of a histogram."""
    rng = np.random.RandomState(0)
    logits = {"net": (rng.randn(40, 3), rng.randn(20, 3)), "file": (rng.randn(40, 3), rng.randn(20, 3))}
    knn = (np.full(40, 5.0), np.full(20, -5.0))
    scores = {"net": {"knn": knn}, "file": {"knn": "detector knn needs penultimate features"}}
    box = widgets.model_score_picker(logits, score_name="knn", scores=scores)
    model, score = box.children[0].children
    assert list(score.options)[-1] == "knn" and "msp" in score.options
    fig = plt.figure()
    widgets.draw_model_view(fig, logits, "net", "knn", scores=scores)
    lo, hi = fig.axes[0].get_xlim()
    assert lo <= -5.0 and hi >= 5.0 and fig.axes[0].get_xlabel() == "score: KNN"
    fig = plt.figure()
    widgets.draw_model_view(fig, logits, "file", "knn", scores=scores)
    assert "needs penultimate features" in fig.axes[0].texts[0].get_text().replace("\n", " ")
    model.value = "file"
    assert box.figures == 2
    import pytest
    from lmoe_viz.errors import UserError
    with pytest.raises(UserError, match="not in the picker"):
        widgets.model_score_picker(logits, score_name="knn")
