# Two commands: `make demo` and `make test`. Both create .venv when it is missing.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# Machines of this class set PYTHONDONTWRITEBYTECODE=1, so every Python process compiled all it imported from
# source: about 8 s of a `bench eval` of 20 s here, and the tests and the demo start dozens of processes. Bytecode
# is cached instead, once, inside the venv (nothing is written into the source tree).
unexport PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX := $(CURDIR)/$(VENV)/pycache

.PHONY: setup test test-slow lint demo clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip

# torch first, pinned to the CPU build on local disk; skipped when the venv already has a torch. The rest without
# byte-compiling its ~15k files (Python compiles what it imports, once, into the cache above): install + first
# import 41 s against 75 s.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	@echo "setting up .venv: torch 2.13.0 (CPU), then dpok-bench and its dependencies"
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet torch==2.13.0
	@$(BIN)/pip install --quiet --no-compile -e '.[test]' > $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@touch $@

setup: $(VENV)/.installed

lint: setup
	$(BIN)/ruff check bench methods evaluations tests scripts
	$(BIN)/ruff format --check bench methods evaluations tests scripts

# One pytest-xdist worker per core, at most 4; each worker's torch takes its share of the cores (tests/conftest.py).
TEST_WORKERS ?= $(shell $(PY) -c 'import os; print(min(4, os.cpu_count() or 1))')

test: setup lint
	@sh .ci/install-chromium.sh
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist worksteal -m "not slow" tests

# Minutes each and several GB of memory (SD v1.5's architecture at 512 px on CPU): not part of `make test`.
test-slow: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider -m slow tests

# The demo protocol (configs/shapes-demo.yaml): DPOK on one shapes-world prompt, a before/after table on 256 fresh
# seeds, then where this draw stands among the committed runs of the same protocol and weights
# (results/shapes-demo-model3/, 512 seeds each). The standing compares gold means, which do not depend on the
# number of samples; 256 keeps the demo well inside 15 minutes at a half-width of about 0.05.
demo: setup
	@run=$$($(BIN)/bench run --config configs/shapes-demo.yaml | tail -n 1 | sed 's/^run folder: //') && \
	  echo "run folder: $$run" && \
	  $(BIN)/bench eval "$$run" --samples 256 && \
	  $(BIN)/bench standing "$$run" --against 'results/shapes-*/*/*'

clean:
	rm -rf $(VENV) build *.egg-info
