"""Sphinx configuration of the documentation site (``make docs``; docs/build.py).

Offline by construction: MyST-NB renders the notebooks from their executed outputs
(never executes them), MathJax is served from the site itself (sphinx-mathjax-offline),
no intersphinx, no CDN script; warnings are errors (``-W --keep-going`` in build.py).
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

project = "lmoe_viz"
author = "the lmoe_viz developers"
copyright = "2026, the lmoe_viz developers"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",          # MathJax 3 copied into _static (no CDN)
]

# -- sources --------------------------------------------------------------------------------
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]
templates_path = ["_templates"]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
# option names stay as typed: "--bn", not an en dash
smartquotes = False
suppress_warnings = ["myst.header"]    # the notebooks' own heading levels (# title, ### ...)

# -- notebooks: rendered from the outputs `lmoe-viz reproduce` saved ---------------------------
nb_execution_mode = "off"
# an explorer's bundle holds its initial figure as image/png beside the widget view
# (widgets.py); with no kernel the PNG is what a reader can see, and no widget JS is loaded
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None),
                              ("html", "application/vnd.jupyter.widget-state+json", None)]
nb_ipywidgets_js = {}

# -- API reference from the docstrings ------------------------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True       # defaults as written (``FIT_LIMIT``), not their values
napoleon_google_docstring = True
napoleon_numpy_docstring = True

# -- HTML -----------------------------------------------------------------------------------
html_theme = "furo"
html_title = "lmoe_viz"
html_static_path = []
html_show_sourcelink = False
# no module index page: the API reference lists the modules (and the basic theme's index
# refers to collapse icons Furo does not ship)
html_domain_indices = False
