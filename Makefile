# Two entry points: `make demo` (set up, then fit the bundled sample) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/python -m nint_dist.launch configs/quickstart.yaml

test: setup
	$(BIN)/python -m ruff check nint_dist tests benchmarks
	$(BIN)/python -m pytest -q tests

lint: setup
	$(BIN)/python -m ruff check nint_dist tests benchmarks

clean:
	rm -rf $(VENV) runs
