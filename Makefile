# Two commands on a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
# The local PostgreSQL the suite runs on a second time (it creates and drops test_hypertalk).
TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/hypertalk

.PHONY: install install-dev lock run test test-sqlite test-postgres test-e2e lint format bench profile clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Dependencies. requirements.txt (runtime) and requirements-dev.txt (tests, linters, tools)
# name what we depend on; requirements.lock and requirements-dev.lock pin the whole tree
# (Twisted, autobahn and every other transitive dependency) with the sha256 of each file,
# and are all that gets installed: pip's --require-hashes refuses any package, version or
# file the lock does not name. After editing a requirements file run `make lock` and commit
# the locks with it; until then `make install` refuses the stale lock (scripts/lockfile.py
# checks the digest of the requirements `make lock` stamped into it). `make lock` keeps the
# versions already locked where it can; `make lock LOCK_ARGS=--upgrade` takes the newest of
# everything, `LOCK_ARGS="--upgrade-package twisted"` of one package. The locks are
# universal (environment markers), for CPython 3.11 and later; the dev lock is resolved
# under the runtime lock, so both install the same versions.
UV_COMPILE := $(BIN)/uv pip compile --quiet --generate-hashes --universal --python-version 3.11 \
  --custom-compile-command "make lock" $(LOCK_ARGS)

$(VENV)/.runtime: requirements.lock requirements.txt | $(BIN)/python
	$(BIN)/python scripts/lockfile.py check requirements.txt requirements.lock
	$(BIN)/pip install -q --require-hashes -r requirements.lock
	touch $@

$(VENV)/.dev: requirements-dev.lock requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python scripts/lockfile.py check requirements-dev.txt requirements-dev.lock
	$(BIN)/pip install -q --require-hashes -r requirements-dev.lock
	touch $@ $(VENV)/.runtime

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

## Regenerate requirements.lock and requirements-dev.lock (uv, as the dev lock pins it).
lock: | $(BIN)/python
	$(BIN)/python scripts/lockfile.py pick requirements-dev.lock uv > $(VENV)/uv.lock-entry
	$(BIN)/pip install -q --require-hashes -r $(VENV)/uv.lock-entry
	$(UV_COMPILE) requirements.txt -o requirements.lock
	$(BIN)/python scripts/lockfile.py stamp requirements.txt requirements.lock
	$(UV_COMPILE) requirements-dev.txt -c requirements.lock -o requirements-dev.lock
	$(BIN)/python scripts/lockfile.py stamp requirements-dev.txt requirements-dev.lock

## Serve on http://127.0.0.1:8000 with SQLite and the in-memory layer: nothing to set up.
# Daphne's runserver (daphne is first in INSTALLED_APPS): the same ASGI application and
# WebSocket limits as the Procfile, under Django's autoreloader. An edited template shows
# on the next request (the template cache is reset, no restart), an edited Python file
# restarts the server (pages reconnect), CSS and JavaScript are read from static/ on each
# request. (Sockets last a day at most here, Daphne's default.) e2e/test_devserver.py runs
# this very command.
run: install
	DEBUG=true $(BIN)/python manage.py migrate --noinput
	DEBUG=true $(BIN)/python manage.py runserver 127.0.0.1:$(PORT) \
	  --websocket-max-message-size 1048576 --websocket-max-frame-size 65536

## Everything: lint, the whole suite on SQLite (browser tests included), again on PostgreSQL.
test: install-dev
	scripts/test-deps.sh
	$(MAKE) --no-print-directory lint test-sqlite test-postgres

test-sqlite: install-dev
	$(BIN)/pytest

## The browser suite alone (e2e/): a failing test keeps its trace, screenshots, page HTML and
# server logs under e2e/artifacts/<test>/ (e2e/README.md). E2E_ARGS adds pytest arguments,
# e.g. E2E_ARGS="-k history -x".
test-e2e: install-dev
	scripts/test-deps.sh
	$(BIN)/pytest e2e -p no:cacheprovider --tracing=retain-on-failure \
	  --screenshot=only-on-failure --output=e2e/artifacts $(E2E_ARGS)

test-postgres: install-dev
	@if $(BIN)/python -c "import psycopg,sys; psycopg.connect('$(dir $(TEST_POSTGRES_URL))postgres', connect_timeout=3)" 2>/dev/null; then \
	  DATABASE_URL=$(TEST_POSTGRES_URL) $(BIN)/pytest -m "not e2e"; \
	elif [ "$$CI" = "true" ]; then echo "PostgreSQL is not reachable at $(TEST_POSTGRES_URL) (required in CI)"; exit 1; \
	else echo "PostgreSQL not reachable at $(TEST_POSTGRES_URL): skipping the PostgreSQL run"; fi

## ruff (lint and format) and mypy (pyproject.toml: strict on realtime/ and rooms.services).
# mypy's Django plugin loads the settings, which refuse to load without a SECRET_KEY: a
# dummy one here, as conftest.py gives the tests.
MYPY_ENV := DJANGO_SETTINGS_MODULE=site_config.settings SECRET_KEY=mypy-only-not-a-secret
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MYPY_ENV) $(BIN)/mypy

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## The fan-out benchmark, then the feature mix (bench/mix.py: every kind of event, its
# renders, deliveries and latency); not part of `make test`; see README "Performance".
bench: install-dev
	$(BIN)/python -m bench
	$(BIN)/python -m bench.mix

## Where the server's CPU goes under fan-out load: py-spy's top frames per thread, by own
# and total time (bench/profile.py). PROFILE_ARGS, e.g. "--n 1000 --rate 16000 --redis".
profile: install-dev
	$(BIN)/python -m bench.profile $(PROFILE_ARGS)

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache .mypy_cache
