# Two commands: `make demo` and `make test`. Both create .venv when it is missing.
# `make lint` (ruff, mypy) runs first in `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := runs/demo

.PHONY: demo test test-slow lint install clean bench-quality bench-speed

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

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info .mypy_cache .ruff_cache
