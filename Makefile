# dlkit course-kit. `make lab` opens the course, `make test` runs every test.
# Both create the virtual environment .venv on first use (Python 3.10-3.13).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
export DLKIT_PROFILE ?= quick

.PHONY: lab test test-unit test-notebooks test-alone test-legacy notebooks lint format doctor legacy-env clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 10) <= v <= (3, 13) else "dlkit needs Python 3.10-3.13, found %d.%d: run make PYTHON=python3.12 ..." % v)'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks

# `make test` runs each notebook once, copied alone (test-alone: strict nbval, the
# stored outputs compared); `make test-notebooks` runs them in place instead.
test: test-unit test-alone test-legacy

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests -rs

test-notebooks: $(STAMP)
	$(BIN)/python -m pytest --nbval notebooks -rs

# Each notebook copied alone into an empty folder, dlkit installed as a package.
test-alone: $(STAMP)
	$(BIN)/python -m pytest tests/test_notebooks_alone.py -m alone -rs

# The tensorflow-addons notebook, in its legacy kernel (skipped if not built).
test-legacy: $(STAMP)
	$(BIN)/python -m pytest --nbval notebooks/legacy -rs

# Re-execute notebooks in place: the only way stored outputs are produced.
# `make notebooks NB=notebooks/02_softmax_regression.ipynb` for just one.
NB ?= notebooks
notebooks: $(STAMP)
	$(BIN)/python -m dlkit run-notebooks $(NB)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .

doctor: $(STAMP)
	$(BIN)/python -m dlkit doctor

# Python 3.11 + TensorFlow 2.15.1 + tensorflow-addons 0.23.0 in .venv-legacy, with
# the Jupyter kernel `dlkit-legacy-tfa` for notebooks/legacy (see README).
LEGACY_ARGS ?=
legacy-env: $(STAMP)
	bash assets/legacy/make_legacy_env.sh $(LEGACY_ARGS)

clean:
	rm -rf $(VENV) .venv-legacy .pytest_cache notebooks/runs notebooks/artifacts runs
