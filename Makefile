# crema: the two commands a new user needs.
#   make run   - set up .venv and run the demo (the main job)
#   make test  - set up .venv and run the tests, type checks and lint
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test check lint typecheck pytest bench clean

$(STAMP): pyproject.toml setup.py src/crema/checkpoint/_mcrs.c src/crema/cache/_entries.c \
		src/crema/server/_getrun.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m crema demo

pytest: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: lint typecheck pytest

clean:
	rm -rf $(VENV) build dist src/*.egg-info .mypy_cache .ruff_cache .pytest_cache demo-data crema-data
