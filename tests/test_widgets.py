import numpy as np

from lmoe_viz import widgets


def _resp():
    return {"id": np.array([3.0, 0.0, -1.0]), "ood": np.array([0.5, 0.2, 0.1]),
            "input_mix": np.array([1.0, 0.1, 0.0]), "lam": 0.5}


def test_mix_explorer_redraws_with_slider(monkeypatch):
    shown = []
    monkeypatch.setattr(widgets, "_static", lambda draw, *a: shown.append(a))
    box = widgets.mix_explorer(_resp())
    slider = box.children[0].children[0]
    assert slider.description == "lambda" and slider.value == 0.5 and len(shown) == 1
    calls = []
    monkeypatch.setattr(widgets, "draw_mix", lambda fig, resp, lam: calls.append(lam))
    slider.value = 0.8
    assert calls == [0.8]


def test_draw_mix_shows_msp():
    import matplotlib.pyplot as plt
    fig = plt.figure()
    widgets.draw_mix(fig, _resp(), 1.0)
    ax1, ax2 = fig.axes
    assert len(ax1.patches) == 6 and ax2.get_title().startswith("MSP = ")
    p = np.exp(_resp()["id"]) / np.exp(_resp()["id"]).sum()
    assert ax2.get_title() == f"MSP = {p.max():.3f}"


def test_beta_and_picker_widgets():
    box = widgets.beta_explorer(2.0)
    assert box.children[0].children[0].value == 2.0
    rng = np.random.RandomState(0)
    logits = {"A": (rng.randn(20, 3), rng.randn(10, 3)), "B": (rng.randn(20, 3), rng.randn(10, 3))}
    box = widgets.model_score_picker(logits)
    model, score = box.children[0].children
    assert list(model.options) == ["A", "B"] and "energy" in score.options
    score.value = "msp"          # redraws without error
    model.value = "B"
