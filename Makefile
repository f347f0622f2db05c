# Two commands: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := runs/demo

.PHONY: demo test install clean bench-quality bench-speed

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
	$(BIN)/mixvae evaluate $(DEMO)
	$(BIN)/mixvae sample $(DEMO) --per-expert 10 --out $(DEMO)/samples.png
	@echo "figures: $(DEMO)/progress.png $(DEMO)/samples.png $(DEMO)/confusion.png"

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
