# Two commands on a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
# The local PostgreSQL the suite runs on a second time (it creates and drops test_hypertalk).
TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/hypertalk

.PHONY: install install-dev run test test-sqlite test-postgres lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

## Serve on http://127.0.0.1:8000 with SQLite and the in-memory layer: nothing to set up.
run: install
	DEBUG=true $(BIN)/python manage.py migrate --noinput
	DEBUG=true $(BIN)/daphne -b 127.0.0.1 -p $(PORT) --websocket_timeout -1 \
	  --websocket-max-message-size 1048576 --websocket-max-frame-size 65536 site_config.asgi:application

## Everything: lint, the whole suite on SQLite (browser tests included), again on PostgreSQL.
test: install-dev
	scripts/test-deps.sh
	$(MAKE) --no-print-directory lint test-sqlite test-postgres

test-sqlite: install-dev
	$(BIN)/pytest

test-postgres: install-dev
	@if $(BIN)/python -c "import psycopg,sys; psycopg.connect('$(dir $(TEST_POSTGRES_URL))postgres', connect_timeout=3)" 2>/dev/null; then \
	  DATABASE_URL=$(TEST_POSTGRES_URL) $(BIN)/pytest -m "not e2e"; \
	elif [ "$$CI" = "true" ]; then echo "PostgreSQL is not reachable at $(TEST_POSTGRES_URL) (required in CI)"; exit 1; \
	else echo "PostgreSQL not reachable at $(TEST_POSTGRES_URL): skipping the PostgreSQL run"; fi

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## The fan-out benchmark (not part of `make test`); see README "Performance".
bench: install-dev
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache
