# `make demo` and `make test` work from a fresh clone: they build everything they need.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check otel_posthog tests examples
	$(BIN)/ruff format --check otel_posthog tests examples
	$(BIN)/mypy otel_posthog

clean:
	rm -rf $(VENV) .otel-posthog
