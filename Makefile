# Common tasks. `make help` lists them.
PYTHON ?= python

.PHONY: help install install-cpu train test test-slow lint format typecheck bench bench-load

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install: ## install the package with test/dev tools (editable)
	$(PYTHON) -m pip install -e ".[dev]"

install-cpu: ## the same with CPU-only PyTorch (torch and torchvision from PyTorch's CPU index)
	$(PYTHON) -m pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu
	$(PYTHON) -m pip install -e ".[dev]"

train: ## the main job on the built-in synthetic data
	$(PYTHON) -m spml_rs.train

test: ## the default test suite (what CI runs)
	$(PYTHON) -m pytest

test-slow: ## the slow end-to-end tests
	$(PYTHON) -m pytest -m slow

lint: ## ruff lint + format check
	ruff check src tests annotator benchmarks
	ruff format --check src tests annotator benchmarks

format: ## apply ruff formatting and safe fixes
	ruff check --fix src tests annotator benchmarks
	ruff format src tests annotator benchmarks

typecheck: ## mypy on src/
	mypy

bench: ## speed benchmarks (print ratios against baselines measured in the same run)
	$(PYTHON) benchmarks/loader_benchmark.py
	$(PYTHON) benchmarks/adagc_overhead.py

bench-load: ## the default job alone, then two at once: slowdown under a competing load
	$(PYTHON) benchmarks/loaded_job.py
