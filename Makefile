# Every target sets itself up: a fresh machine needs only python3 (3.11 or newer) and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: help demo test lint typecheck docs docs-serve bench overload check clean

help:
	@echo "make demo       run the demonstration (in-memory, no services needed)"
	@echo "make test       run the whole test suite"
	@echo "make check      lint, format check, mypy --strict, docs build (what CI adds to make test)"
	@echo "make bench      run the benchmarks against the peer libraries"
	@echo "make overload   run the overload benchmark (a real server at 3x its capacity)"
	@echo "make docs-serve serve the documentation on http://127.0.0.1:8000"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install 'pip>=25.1'

# pip >= 25.1 reads [dependency-groups] from pyproject.toml (PEP 735).
$(VENV)/.dev: $(BIN)/python pyproject.toml
	$(PIP) install -e '.[all]' --group dev
	@touch $@

$(VENV)/.bench: $(VENV)/.dev
	$(PIP) install --group bench
	@touch $@

demo: $(VENV)/.dev
	$(BIN)/python examples/demo.py

test: $(VENV)/.dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks

typecheck: $(VENV)/.dev
	$(BIN)/mypy src tests/typing

docs: $(VENV)/.dev
	$(BIN)/mkdocs build --strict --site-dir .site

docs-serve: $(VENV)/.dev
	$(BIN)/mkdocs serve

check: lint typecheck docs

bench: $(VENV)/.bench
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

overload: $(VENV)/.bench
	$(BIN)/python benchmarks/overload.py $(OVERLOAD_ARGS)

clean:
	rm -rf $(VENV) .site .mypy_cache .ruff_cache .hypothesis build dist
