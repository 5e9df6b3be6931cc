# make demo: set up .venv and run the small end-to-end job; make test: set up .venv, lint, run the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch pinned first: on these machines 2.13.0 is the CPU wheel on local disk (no CUDA build, no torchvision)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/maelab demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

# two one-thread pytest workers: on 2 cores 10.7 min where one two-thread process took 15.3 (docs/performance.md)
PYTEST_WORKERS ?= 2
test: lint
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal

clean:
	rm -rf $(VENV) build src/*.egg-info
