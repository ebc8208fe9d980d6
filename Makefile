# The README's two commands: `make reproduce` (main job) and `make test` (whole suite).
# Both create the virtual environment and install the project when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PRESET ?= digits
OUT ?= out/$(PRESET)

.PHONY: install test test-fast reproduce docs fashion-data clean notebooks bench test-browser browser-deps

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests --nbval-lax notebooks

test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow and not notebooks"

# The browser tier (tests/browser): the notebooks and explorers in JupyterLab and index.html,
# in headless Chromium; skipped without chromium + chromedriver (`make browser-deps`)
test-browser: $(STAMP)
	LMOE_BROWSER=1 $(PY) -m pytest tests/browser -v -rs

# Debian's Chromium and its WebDriver, one release (for `make test-browser`)
browser-deps:
	apt-get update -qq && apt-get install -y -qq chromium chromium-driver

reproduce: $(STAMP)
	$(VENV)/bin/lmoe-viz reproduce --preset $(PRESET) --out $(OUT)

# The documentation site -> docs/_build/html (offline; warnings are errors). It renders the
# notebooks `make reproduce` executed into $(OUT), executing first what is out of date.
docs: $(STAMP)
	$(PY) docs/build.py --preset $(PRESET) --out $(OUT)

# Speed and cost as ratios measured in one run -> benchmarks/results/<machine>.json
# (~15 min on 2 shared cores, mostly two `lmoe-viz reproduce` runs; BENCH_ARGS=--skip-reproduce leaves them out)
bench: $(STAMP)
	$(PY) -m benchmarks $(BENCH_ARGS)

# Fashion-MNIST from Debian's package (the fashion-mnist preset also reads --data-root)
fashion-data:
	apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist

clean:
	rm -rf $(VENV) out notebooks/executed docs/_build docs/notebooks/executed docs/api/generated

# Maintainers: re-execute the notebooks with their defaults and strip all outputs but
# the cells nbval checks (# NBVAL_CHECK_OUTPUT).
notebooks: $(STAMP)
	$(PY) -m lmoe_viz.reproduce notebooks/*.ipynb
