# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

POSTGRES_TESTS := tests/test_metering_sdk.py tests/test_budgets.py tests/test_reports.py \
	tests/test_batch.py tests/test_fallbacks.py tests/test_errors.py tests/test_durability.py \
	tests/test_response_cache.py tests/test_budget_alerts.py tests/test_cli.py \
	tests/test_routing_strategies.py tests/test_redis_replicas.py tests/test_semantic_gateway.py \
	tests/test_fault_suite.py

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU build of PyTorch first: the embeddings extra would otherwise pull a CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tokenomy demo $(DEMO_ARGS)

test: $(STAMP)
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)
	# The gateway-level tests again with PostgreSQL as the ledger (a fresh database each).
	TOKENOMY_TEST_DATABASE=postgresql $(BIN)/python -m pytest -q $(POSTGRES_TESTS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy

bench: $(STAMP)
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python benchmarks/gateway_overhead.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) tokenomy-demo .pytest_cache .mypy_cache .ruff_cache
