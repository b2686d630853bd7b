# Set-up and the everyday commands. `make run` and `make test` each install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Jobs in parallel: every core of this machine (`make run CORES=2` for fewer).
CORES ?= $(shell nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 2)
# The exact versions the tests and the measured results ran with (`make lock` rewrites it);
# `make install CONSTRAINTS=` installs the newest versions pyproject.toml allows instead.
CONSTRAINTS ?= constraints.txt
# The stage commands (skinlesion, snakemake, dvc) come from the virtual environment.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install run test lint dag lock clean-outputs exp-show

$(BIN)/skinlesion: pyproject.toml $(wildcard $(CONSTRAINTS))
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,cluster]" $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
	touch $@

# DVC's plots page with Vega inlined, so `dvc plots show/diff` draw offline (.dvc/config: plots.html_template)
.dvc/offline-plots.html: $(BIN)/skinlesion workflow/scripts/dvc-plots-template.py
	$(BIN)/python workflow/scripts/dvc-plots-template.py --out $@

install: $(BIN)/skinlesion .dvc/offline-plots.html

## run: the whole pipeline on params.yaml (default: the embedded synthetic dataset, offline)
# (Snakemake's onsuccess prints the summary: the variant chosen on validation, random-weights warnings, the report.)
run: install
	snakemake --cores $(CORES) results/all

## test: the test suite (unit, end-to-end snakemake + dvc runs, pipeline checks)
test: install
	pytest

lint: install
	snakemake --lint

dag: install
	dvc dag
	snakemake -n results/all

## lock: pin the environment's current versions into constraints.txt (after changing dependencies)
# Each pin carries the Python version it was resolved on: other Pythons resolve freely.
lock:
	{ echo "# Versions the tests and docs/results-*.md ran with: pip install -e '.[test,cluster]' -c constraints.txt"; \
	  echo "# Regenerate with 'make lock'."; \
	  py=$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	  $(BIN)/python -m pip freeze --exclude-editable | sed "s/$$/ ; python_version == \"$$py\"/"; \
	} > constraints.txt.tmp && mv constraints.txt.tmp constraints.txt

clean-outputs:
	rm -rf data/raw data/interim data/processed models bundles logs .snakemake results/all/index.html results/all/roc.png

## exp-show: the experiments in 200 columns: each variant's test ROC AUC per experiment, then the params that differ
# (`dvc exp show` gives every metric and param its own column, thousands of characters wide)
exp-show: install
	$(BIN)/python workflow/scripts/exp-table.py
