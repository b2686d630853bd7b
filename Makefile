# Set-up and the everyday commands. `make run` and `make test` each install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 8
# The stage commands (skinlesion, snakemake, dvc) come from the virtual environment.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install run test lint dag clean-outputs

$(BIN)/skinlesion: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/skinlesion

## run: the whole pipeline on params.yaml (default: the embedded synthetic dataset, offline)
run: install
	snakemake --cores $(CORES) results/all
	@echo "Open results/all/index.html"

## test: the test suite (unit, end-to-end snakemake + dvc runs, pipeline checks)
test: install
	pytest

lint: install
	snakemake --lint

dag: install
	dvc dag
	snakemake -n results/all

clean-outputs:
	rm -rf data/raw data/interim data/processed models results/all results/variants logs .snakemake
