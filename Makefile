# Two entry points: `make demo` (set up, then fit the bundled sample) and `make test`.
# `make setup` creates .venv with a PyTorch build that suits this machine (tools/install_torch.sh:
# CPU build without a GPU, CUDA build with one, an installed torch kept) and the package in
# editable mode. TORCH=cpu or TORCH=cuda overrides the choice; PYTHON picks the interpreter.
PYTHON ?= python3
TORCH ?= auto
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NEED := 3.11
VERSION_CHECK := import sys; sys.exit(sys.version_info < (3, 11))

.PHONY: setup demo test test-fast lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml tools/install_torch.sh
	@$(PYTHON) -c '$(VERSION_CHECK)' 2>/dev/null || { \
		echo "error: nint_dist needs Python $(NEED) or newer; '$(PYTHON)' is $$($(PYTHON) -V 2>&1 || echo missing)." \
		"Run: make $(MAKECMDGOALS) PYTHON=python$(NEED)" >&2; exit 2; }
	@test ! -x $(BIN)/python || $(BIN)/python -c '$(VERSION_CHECK)' || { \
		echo "error: $(VENV) was made with $$($(BIN)/python -V 2>&1); nint_dist needs Python $(NEED) or" \
		"newer: remove $(VENV) (make clean) and run make again" >&2; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	tools/install_torch.sh $(BIN)/python $(TORCH)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)
	@echo "ready: activate the environment with 'source $(VENV)/bin/activate' (then nint, python -m" \
		"nint_dist…, ray and tensorboard work in that shell), or call $(BIN)/nint directly"

demo: setup
	$(BIN)/nint fit configs/quickstart.yaml
	@echo "in a new shell, first: source $(VENV)/bin/activate"

test: setup
	$(BIN)/python -m ruff check nint_dist tests benchmarks
	$(BIN)/python -m pytest -q tests

# The tests that start no Ray instance or cluster (the `slow` marker, pyproject.toml).
test-fast: setup
	$(BIN)/python -m ruff check nint_dist tests benchmarks
	$(BIN)/python -m pytest -q -m "not slow" tests

lint: setup
	$(BIN)/python -m ruff check nint_dist tests benchmarks

clean:
	rm -rf $(VENV) runs
