# emoctx: the two set-up commands of the README are `make demo` and `make test`.
# Both create the virtual environment in .venv (with the tested torch/torchvision pins) when it is missing
# or older than pyproject.toml / constraints.txt.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export YOLO_OFFLINE ?= 1
export WANDB_MODE ?= offline

.PHONY: demo test test-annotate test-slow lint format bench clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --progress-bar off -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)  ## generate EMOTIC-synth, train, evaluate and predict end to end (outputs in runs/demo)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

test: $(STAMP)  ## the test suite CI runs (< 10 min on 2 CPU cores)
	$(BIN)/python -m pytest -q

test-annotate: $(STAMP)  ## the annotation round trip against a real Label Studio and Chromium (CI runs it too)
	$(BIN)/python -m pytest -q -m labelstudio --timeout 900  # the first test installs Label Studio

test-slow: $(STAMP)  ## heavier variants kept out of the default run
	$(BIN)/python -m pytest -q -m slow --timeout 1800

bench: $(STAMP)  ## speed, memory and accuracy-cost tables of this machine (about 25 min on 2 cores; runs/bench/bench.md)
	YOLO_CONFIG_DIR="$(CURDIR)/runs/bench/ultralytics" $(BIN)/python scripts/bench.py --out runs/bench --profile

lint: $(STAMP)
	$(BIN)/ruff check emoctx tests scripts
	$(BIN)/ruff format --check emoctx tests scripts

format: $(STAMP)
	$(BIN)/ruff format emoctx tests scripts
	$(BIN)/ruff check --fix emoctx tests scripts

clean:
	rm -rf runs .pytest_cache .ruff_cache
