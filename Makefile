# Two commands: `make lab` (install, then JupyterLab) and `make test` (install, then tests and notebooks).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0

.PHONY: install lab test test-unit test-notebooks clean

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

test-unit: install
	$(BIN)/python -m pytest tests -q

test-notebooks: install
	$(BIN)/python -m pytest --nbval-lax notebooks -q -p no:cacheprovider

test: install
	$(BIN)/python -m pytest tests -q
	$(BIN)/python -m pytest --nbval-lax notebooks -q -p no:cacheprovider

clean:
	rm -rf $(VENV)
