# Two commands: `make lab` (install, then JupyterLab) and `make test` (install, then tests and notebooks).
# `make test-unit` is the fast tier of the unit tests (no test marked slow).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0

.PHONY: install lab test test-unit test-slow test-notebooks clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_PIN)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

lab: install
	$(BIN)/jupyter lab notebooks/

# pytest exits 5 when it collects no test; that alone must not fail CI.
PYTEST := $(BIN)/python -m pytest -p no:cacheprovider
ALLOW_NO_TESTS := rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ] || exit $$rc

# The fast tier, what a contributor runs after each edit (under 30 s): every test not marked slow.
test-unit: install
	$(PYTEST) tests -q -m "not slow" --durations=5; $(ALLOW_NO_TESTS)

test-slow: install
	$(PYTEST) tests -q -m slow --durations=10; $(ALLOW_NO_TESTS)

test-notebooks: install
	$(PYTEST) --nbval-lax --nbval-current-env --nbval-cell-timeout=600 notebooks -q --durations=6; $(ALLOW_NO_TESTS)

test: test-unit test-slow test-notebooks

clean:
	rm -rf $(VENV)
