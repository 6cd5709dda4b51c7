# `make demo` and `make test` work from a fresh clone: they install everything they need
# (Python venv and packages, npm packages, and Debian's Chromium for the browser tests).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: install node browser test test-oldest test-public-api demo lint bench clean

$(STAMP): pyproject.toml .ci/test-constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c .ci/test-constraints.txt -e '.[test]'
	touch $(STAMP)

$(NODE_STAMP): package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

install: $(STAMP) $(NODE_STAMP)

node: $(NODE_STAMP)

# Debian's Chromium (never a browser download of a test tool's own).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

# The product in one command, no PostHog account: local sink + example app + a user's journey.
demo: $(STAMP)
	$(BIN)/otel-posthog demo $(DEMO_ARGS)

test: install browser
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The oldest versions pyproject.toml allows (.ci/oldest-constraints.txt), on the tests that
# touch every OpenTelemetry / PostHog integration point; `make test` covers the newest.
OLDEST := .venv-oldest
OLDEST_TESTS := tests/test_mapping.py tests/test_bridge.py tests/test_existing_setup.py \
	tests/test_launcher.py tests/test_id_generator.py tests/test_receiver_parity.py \
	tests/test_outbound.py tests/test_jwt_identity.py tests/test_identity_hops.py \
	tests/test_stats.py tests/test_bridge_process.py tests/test_compat.py \
	tests/test_starlette_layer.py
$(OLDEST)/.installed: pyproject.toml .ci/oldest-constraints.txt
	$(PY) -m venv $(OLDEST)
	$(OLDEST)/bin/pip install -q --upgrade pip
	$(OLDEST)/bin/pip install -q -c .ci/oldest-constraints.txt -e '.[test-core]'
	touch $@

test-oldest: $(OLDEST)/.installed
	$(OLDEST)/bin/python -m pytest -q -p no:cacheprovider $(OLDEST_TESTS)

# The same tests with every fast path of otel_posthog/compat.py switched off: the public-API
# fallbacks (OTEL_POSTHOG_COMPAT=public, a diagnostic) must behave the same.
test-public-api: $(STAMP)
	OTEL_POSTHOG_COMPAT=public $(BIN)/python -m pytest -q -p no:cacheprovider $(OLDEST_TESTS)

# Every benchmark scenario in one run, one table (docs/performance.md); valgrind for the
# instruction counts. BENCH_ARGS e.g. "--scenarios 2,4 --skip load,faults".
bench: $(STAMP)
	@if ! command -v valgrind >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; \
	fi
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# the core held to mypy --strict (the same list as pyproject.toml's strict override)
STRICT := otel_posthog/core otel_posthog/compat.py otel_posthog/counters.py otel_posthog/delivery
lint: $(STAMP)
	$(BIN)/ruff check otel_posthog tests benchmarks
	$(BIN)/ruff format --check otel_posthog tests benchmarks
	$(BIN)/mypy otel_posthog
	$(BIN)/mypy --strict --follow-imports=silent $(STRICT)

clean:
	rm -rf $(VENV) $(OLDEST) node_modules .otel-posthog
