import json
from pathlib import Path

import nbformat
import pytest

from lmoe_viz import reproduce as R
from lmoe_viz.cli import main
from lmoe_viz.errors import UserError

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
SMALLEST = [("alphas", "[1.0]"), ("seeds", "[0]"), ("pretrain_epochs", "2"),
            ("finetune_epochs", "1"), ("limit_batches", "3"), ("study_units", "2"),
            ("study_extra_units", "2"), ("study_alphas", "[1.0, 3.0]"), ("lc_modes", "[stop-id]")]


@pytest.mark.notebooks
def test_reproduce_digits_writes_every_artifact(tmp_path):
    argv = ["reproduce", "--preset", "digits", "--out", str(tmp_path), "--no-progress"]
    for name, value in SMALLEST:
        argv += ["-p", name, value]
    assert main(argv) == 0
    for nb in R.NOTEBOOKS:          # every cell ran, none raised
        executed = nbformat.read(tmp_path / "notebooks" / nb, as_version=4)
        code = [c for c in executed.cells if c.cell_type == "code"]
        assert all(c.execution_count for c in code), nb
        assert not [o for c in code for o in c.outputs if o.output_type == "error"], nb
        # each figure is displayed once: by plots.show, never again as the cell's value (an
        # explorer widget's value carries its own PNG fallback: that one is the figure)
        assert not [c.source for c in code for o in c.outputs
                    if o.output_type == "execute_result" and "image/png" in o.get("data", {})
                    and WIDGET_VIEW not in o.get("data", {})], nb
    figs = ["fig3_logit_norm_histograms", "fig4_logit_pca", "fig5_6_sample_logit_responses",
            "fig7_beta_distributions", "claims_primary", "claims_alpha", "claims_controls",
            "claims_logit_norms"]
    for f in figs:
        for ext in ("png", "pdf"):
            assert (tmp_path / "figures" / f"{f}.{ext}").stat().st_size > 1000, f
    for ext in ("csv", "md", "tex"):
        assert (tmp_path / "tables" / f"table1.{ext}").is_file()
    index = (tmp_path / "index.md").read_text()
    assert all(f"figures/{f}.png" in index for f in figs) and "Table I" in index
    page = (tmp_path / "index.html").read_text()
    assert "<meta charset='utf-8'>" in page and "<table>" in page and "**" not in page
    assert "<a href='notebooks/01_train.ipynb'>" in page and "Fig. 4: PCA of logits" in page
    table = (tmp_path / "tables" / "table1.md").read_text()
    assert "Logit MixOE w/ L_LC" in table and "**" in table
    assert r"\begin{tabular}" in (tmp_path / "tables" / "table1.tex").read_text()
    # notebook 07: the smoke study, its pre-registered family (too few units: not run yet)
    claims_md = (tmp_path / "study" / "results" / "claims.md").read_text()
    assert "Pre-registered primary family (digits)" in claims_md and claims_md.count("| H") == 8
    assert "not run yet" in claims_md
    meta = json.loads((tmp_path / "reproduce.json").read_text())
    assert set(meta["seconds"]) == set(R.NOTEBOOKS) and meta["up_to_date"] == []
    # a second call executes nothing; a lost figure re-executes the notebook that drew it
    assert main(argv) == 0
    assert json.loads((tmp_path / "reproduce.json").read_text())["up_to_date"] == list(R.NOTEBOOKS)
    (tmp_path / "figures" / "fig7_beta_distributions.png").unlink()
    assert main(argv) == 0
    again = json.loads((tmp_path / "reproduce.json").read_text())["up_to_date"]
    assert again == [nb for nb in R.NOTEBOOKS if nb != "05_beta_distributions.ipynb"]
    assert (tmp_path / "figures" / "fig7_beta_distributions.png").stat().st_size > 1000


def test_up_to_date_digest_follows_inputs_not_derived_caches(tmp_path):
    from lmoe_viz import nbcache
    nb = tmp_path / "n.ipynb"
    nb.write_text("{}")
    runs = tmp_path / "out" / "runs"
    (runs / "a" / "logits").mkdir(parents=True)
    (runs / "a" / "metrics.json").write_text("{}")
    out = tmp_path / "out"
    params = {"runs_dir": str(runs), "out_dir": str(out), "alpha": 1.0}
    d0 = nbcache.inputs_digest(nb, params, out, "pkg")
    (runs / "a" / "logits" / "k.npz").write_bytes(b"cache")          # derived: no change
    (out / "figures").mkdir()
    (out / "figures" / "f.png").write_bytes(b"png")                    # the output folder: no change
    assert nbcache.inputs_digest(nb, params, out, "pkg") == d0
    (runs / "a" / "metrics.json").write_text('{"finished": true}')   # a run changed
    d1 = nbcache.inputs_digest(nb, params, out, "pkg")
    assert d1 != d0
    assert nbcache.inputs_digest(nb, {**params, "alpha": 2.0}, out, "pkg") != d1
    assert nbcache.inputs_digest(nb, params, out, "pkg2") != d1
    nb.write_text('{"cells": []}')
    assert nbcache.inputs_digest(nb, params, out, "pkg") != d1


def test_params_file_and_overrides(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("alphas: [0.1, 10]\nseeds: [0]\n")
    params = R.load_params(f, [("seeds", "[1, 2]"), ("lam", "0.25"), ("data_root", "null")])
    assert params == {"alphas": [0.1, 10], "seeds": [1, 2], "lam": 0.25, "data_root": None}
    with pytest.raises(UserError, match="parameter file .* not found"):
        R.load_params(tmp_path / "missing.yaml")


def test_wrong_parameter_type_is_refused(tmp_path, capsys):
    assert main(["reproduce", "--out", str(tmp_path), "-p", "alphas", "abc"]) == 2
    err = capsys.readouterr().err
    assert "parameter 'alphas'" in err and "expects list" in err and "got str 'abc'" in err
    assert main(["reproduce", "--out", str(tmp_path), "-p", "lam", "true"]) == 2
    assert "expects float" in capsys.readouterr().err
    assert main(["reproduce", "--out", str(tmp_path), "-p", "alpha_fokus", "1"]) == 2
    assert "unknown parameter(s) ['alpha_fokus']" in capsys.readouterr().err
    assert not (tmp_path / "figures").exists()


def test_repo_params_files_match_notebooks():
    params_dir = Path(__file__).resolve().parents[1] / "params"
    names = {p.stem for p in params_dir.glob("*.yaml")}
    assert {"digits", "fashion-mnist", "bird", "aircraft", "butterfly", "car"} <= names
    defaults = {}
    for nb in R.NOTEBOOKS:
        defaults.update(R.notebook_parameters(R.NOTEBOOK_DIR / nb))
    for p in params_dir.glob("*.yaml"):
        params = R.load_params(p)
        for nb in R.NOTEBOOKS:
            R.check_types(nb, defaults, params)
        assert set(params) <= set(defaults), p
    bird = R.load_params(params_dir / "bird.yaml")
    assert bird["alphas"] == [0.1, 0.3, 1.0, 3.0, 5.0, 10.0] and bird["pretrain_epochs"] == 90


def test_committed_notebooks_are_stripped_and_parameterised():
    for nb_name in R.NOTEBOOKS:
        nb = nbformat.read(R.NOTEBOOK_DIR / nb_name, as_version=4)
        assert nb.metadata["kernelspec"]["name"] == "python3"
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, nb_name
        assert all("#" in line for line in tagged[0].source.splitlines() if line.strip())
        info = nb.metadata["language_info"]
        # complete, as a kernel reports it (JupyterLab then marks nothing modified on
        # open); the patch version is that of the maintainer's Python
        assert {"mimetype", "codemirror_mode", "pygments_lexer", "version"} <= set(info), nb_name
        info["version"] = R.kernel_language_info()["version"]
        assert not R.strip_outputs(nb), f"{nb_name} has unstripped outputs: run `make notebooks`"
        checked = [c for c in nb.cells if "NBVAL_CHECK_OUTPUT" in c.get("source", "")]
        assert checked and all(c.outputs for c in checked), nb_name


@pytest.mark.notebooks
def test_reproduce_with_another_parameter_matrix(tmp_path):
    """A methods subset, no L_LC, one alpha and seed, and a focus outside the grid: every
    notebook runs, Table I holds exactly the requested cells, the figures show the grid's
    models and say what they leave out, and nothing outside the grid is trained."""
    argv = ["reproduce", "--preset", "digits", "--out", str(tmp_path), "--no-progress"]
    matrix = [("methods", "[mixoe]"), ("lcs", "[false]"), ("alphas", "[3.0]"), ("seeds", "[1]"),
              ("alpha_focus", "1.0"), ("seed_focus", "0")]
    for name, value in dict(SMALLEST + matrix).items():
        argv += ["-p", name, value]
    assert main(argv) == 0
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir() if (p / "metrics.json").is_file())
    assert runs == ["mixoe_a3_s1_bn-id-stats", "oe_s1_bn-id-stats", "pretrained"]
    table = (tmp_path / "tables" / "table1.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("|")][2:]   # after header, rule
    assert table.startswith("Protocol `holdout`, score `msp`, metric convention `ours`")
    assert len(rows) == 3 and "Logit MixOE" not in table and "L_LC" not in table
    assert all(r.split("|")[1].strip() in ("", "3") for r in rows)     # alpha column
    nb02 = nbformat.read(tmp_path / "notebooks" / "02_logit_norm_histograms.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in nb02.cells if c.cell_type == "code" for o in c.outputs)
    assert "alpha_focus 1 is not among the grid's alphas [3.0]: the figures show alpha 3" in text
    assert "seed_focus 0 is not among the grid's seeds [1]" in text
    assert "Logit MixOE w/ L_LC is not in the grid" in text and "models: ['Pretrained', 'MixOE']" in text
    nb05 = nbformat.read(tmp_path / "notebooks" / "05_beta_distributions.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in nb05.cells if c.cell_type == "code" for o in c.outputs)
    assert "lambdas drawn per alpha: {3.0: 3}" in text
    for f in ("fig3_logit_norm_histograms", "fig4_logit_pca", "fig5_6_sample_logit_responses",
              "fig7_beta_distributions"):
        assert (tmp_path / "figures" / f"{f}.png").stat().st_size > 1000, f


def test_index_page_is_a_page(tmp_path):
    """A real table, a charset, titled figures at their drawn size, links to everything."""
    import matplotlib.pyplot as plt

    from lmoe_viz.report import write_index
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "table1.md").write_text(
        "| alpha | model | AUROC (%) |\n|---|---|---|\n|  | Pretrained | 90.00 |\n"
        "| 1 | Logit MixOE w/ L_LC | **95.50 ± 0.71** |\n")
    (tmp_path / "tables" / "table1.csv").write_text("a\n1\n")
    for name, width in (("fig4_logit_pca", 6.0), ("fig7_beta_distributions", 3.0)):
        fig = plt.figure(figsize=(width, 2.0))
        fig.savefig(tmp_path / f"{name}.png", dpi=200)
        (tmp_path / "figures").mkdir(exist_ok=True)
        (tmp_path / f"{name}.png").rename(tmp_path / "figures" / f"{name}.png")
    (tmp_path / "runs" / "pretrained").mkdir(parents=True)
    (tmp_path / "runs" / "pretrained" / "metrics.json").write_text("{}")
    page = write_index(tmp_path, "digits", {"01_train.ipynb": 3.0}).read_text()
    assert page.startswith("<!doctype html>") and "<meta charset='utf-8'>" in page
    assert "<th>AUROC (%)</th>" in page and "<td><strong>95.50 ± 0.71</strong></td>" in page
    assert "**" not in page and "<pre>" not in page
    assert "<h2>Fig. 4: PCA of logits, one common scale</h2>" in page
    assert "<a href='notebooks/01_train.ipynb'>" in page and "tables/table1.csv" in page
    assert "runs/pretrained/metrics.json" in page
    # drawn at 6 and 3 inches: 576 and 288 CSS pixels, the same type size in both
    assert "fig4_logit_pca' width='576'" in page and "fig7_beta_distributions' width='288'" in page


def test_readme_tables_are_the_committed_results():
    """Every results block of the README is its committed file (results/update_readme.py
    writes them); a number typed by hand into the README fails here. The other tables are
    included by the documentation's pages (tests/test_docs.py)."""
    import re
    root = Path(R.__file__).resolve().parents[1]
    text = (root / "README.md").read_text()
    blocks = re.findall(r"<!-- results:(\S+) -->\n(.*?)\n<!-- /results:\1 -->", text, flags=re.S)
    assert {name for name, _ in blocks} >= {"claims_primary.md"}
    for name, body in blocks:
        assert body.strip() == (root / "results" / name).read_text().strip(), name
