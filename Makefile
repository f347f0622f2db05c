# Two commands: `make demo` and `make test`. Both create .venv when it is missing.
# `make lint` (ruff, mypy) runs first in `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := runs/demo

.PHONY: demo test test-slow lint install clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mixvae fetch mnist
	$(BIN)/mixvae train --data mnist --out $(DEMO) --overwrite
	$(BIN)/mixvae evaluate $(DEMO) > $(DEMO)/table.txt
	$(BIN)/mixvae sample $(DEMO) --per-expert 10 --out $(DEMO)/samples.png
	@echo "figures: $(DEMO)/progress.png $(DEMO)/samples.png $(DEMO)/confusion.png"
	@cat $(DEMO)/table.txt

# ruff lints every Python file under the repository (src, tests, benchmarks, examples) except the
# excluded folders of [tool.ruff] and .gitignore; mypy checks the files of [tool.mypy] (src).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

# the slow tests: clustering quality on a real MNIST subset (fetches MNIST on first use)
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# the headline results again, on the code at hand (labels only to score): the demo, the default preset on
# MNIST (10 seeds) and Fashion-MNIST (5 seeds), and the robust table's own rows (mixvae and spectral clustering of
# its graph, 3 seeds each); then README.md and BENCHMARKS.md are rewritten from the result files. Fashion-MNIST
# comes from Debian's dataset-fashion-mnist package (see README). An estimate: about 4 hours alone on 2 cores (the
# per-seed times in the result files: about 10 minutes for MNIST and Fashion-MNIST at one thread, two at once; the
# robust rows about 2 hours at one thread, since the small sets train 2 to 5 times).
bench: $(STAMP)
	$(BIN)/mixvae fetch mnist
	$(BIN)/mixvae fetch fashion-mnist
	$(BIN)/python benchmarks/demo.py --out $(DEMO)
	$(BIN)/python benchmarks/quality.py --data mnist --preset default --seeds 0 1 2 3 4 5 6 7 8 9 --gen-eval \
		--threads 1 --jobs 2 --tag bench
	$(BIN)/python benchmarks/quality.py --data fashion-mnist --preset default --seeds 0 1 2 3 4 --threads 1 \
		--jobs 2 --tag bench
	$(BIN)/python benchmarks/robust.py --methods mixvae spectral --seeds 0 1 2 --threads 1
	$(BIN)/python benchmarks/tables.py

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info .mypy_cache .ruff_cache
