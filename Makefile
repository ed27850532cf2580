# effdl: `make book` builds the reproduction record and the HTML book; `make test` runs
# every test. Both create the virtual environment and build the extensions first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXT_STAMP := build/.extensions
JOBS ?= 2
NB ?= 01_ood_distillation
PROFILE ?= cpu
PARAMS ?=
export PYTHONUNBUFFERED := 1

.PHONY: help venv ext chapters chapter book reproduce book-html smoke test test-unit test-notebooks check clean \
	mathjax browser test-browser

help:
	@echo "make book      set up, re-run the chapters whose record is stale (cpu profile), build the HTML book"
	@echo "make book FORCE=1 (or make reproduce)   re-run every chapter"
	@echo "make test      set up, run unit tests, notebooks under smoke (nbval), book build"
	@echo "make chapter NB=01_ood_distillation PROFILE=gpu PARAMS='-p seeds 5'"

# Real allocators for the Fast Bitmap Fit chapter (LD_PRELOAD); optional, so a machine
# without apt or root still builds everything else and the chapter says which ran.
SYSDEPS := libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4

# The book's math is typeset by MathJax served from the build (no CDN): the npm package
# mathjax, its es5 bundle copied to build/book-static/mathjax (html_static_path).
MATHJAX_VERSION := 3.2.2
MATHJAX := build/book-static/mathjax/tex-mml-chtml.js
# The browser test of the built book: Debian's Chromium and its ChromeDriver (selenium).
BROWSER_DEPS := chromium chromium-driver

$(STAMP): pyproject.toml constraints.txt
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  dpkg -s $(SYSDEPS) >/dev/null 2>&1 || { apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSDEPS) >/dev/null; } || \
	  echo "warning: could not install $(SYSDEPS); the allocator chapter will run without them"; \
	else echo "note: install $(SYSDEPS) (Debian) to compare real allocators"; fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt "setuptools" "wheel" "Cython" "numpy"
	$(PY) -m pip install -q -c constraints.txt -e ".[book,test]" --no-build-isolation
	$(PY) -m ipykernel install --sys-prefix --name effdl --display-name "effdl (venv)" >/dev/null
	touch $@

venv: $(STAMP)

$(EXT_STAMP): $(STAMP) setup.py $(wildcard cython_ext/*.pyx cython_ext/*.pxd cython_ext/*.h effdl_lib/*.pxd)
	$(PY) setup.py -q build_ext --inplace
	mkdir -p build && touch $@

ext: $(EXT_STAMP)

# Re-runs only the chapters whose record is stale (inputs changed, core changed, record
# missing) and says why; FORCE=1 re-runs every chapter (also: make reproduce).
chapters: ext
	$(PY) -m effdl_lib.pipeline book --jobs $(JOBS) $(if $(FORCE),--force)

chapter: ext
	$(PY) -m effdl_lib.pipeline run $(NB) --profile $(PROFILE) $(PARAMS)

$(MATHJAX):
	@command -v npm >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; } || \
	  { echo "error: the book needs npm to install MathJax $(MATHJAX_VERSION) (offline math): install Node.js and npm" >&2; exit 1; }
	npm install --silent --no-save --no-audit --no-fund --prefix build/npm mathjax@$(MATHJAX_VERSION)
	rm -rf build/book-static/mathjax && mkdir -p build/book-static
	cp -r build/npm/node_modules/mathjax/es5 build/book-static/mathjax
	test -f $@

mathjax: $(MATHJAX)

book-html: ext $(MATHJAX)
	$(PY) -m effdl_lib.pipeline record-page
	$(PY) -m effdl_lib.book
	$(VENV)/bin/jupyter-book build . -W -n --keep-going --quiet

# Chromium for the browser test; like SYSDEPS, installed with apt where we are root, and
# the test skips with a message where it cannot be installed.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_DEPS) >/dev/null; } || \
	  echo "warning: could not install $(BROWSER_DEPS); the browser test will be skipped"; \
	else echo "note: install $(BROWSER_DEPS) (Debian) to run the browser test of the book"; fi

# Opens every page of _build/html in headless Chromium; run after book-html.
test-browser: browser
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/test_book_browser.py

book: ext
	$(MAKE) --no-print-directory chapters   # sequential even under make -j: the book needs the records
	$(MAKE) --no-print-directory book-html
	@echo "book: $(CURDIR)/_build/html/index.html"

reproduce:
	$(MAKE) --no-print-directory book FORCE=1

smoke: ext
	$(PY) -m effdl_lib.pipeline smoke

check: ext
	$(PY) -m effdl_lib.pipeline check

test-unit: ext
	$(VENV)/bin/pytest -q -n $(JOBS) tests --ignore=tests/test_book_browser.py

test-notebooks: smoke
	EFFDL_RECORD_DIR=build/smoke EFFDL_QUIET=1 EFFDL_WORKERS=1 $(VENV)/bin/pytest -q -n $(JOBS) --dist loadfile \
	  --nbval-lax --nbval-current-env -p no:cacheprovider build/smoke

test: ext
	$(MAKE) --no-print-directory test-unit test-notebooks book-html
	$(MAKE) --no-print-directory test-browser   # after the book is built, even under make -j

clean:
	rm -rf build _build
