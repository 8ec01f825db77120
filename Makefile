# Two entry points, both idempotent on a fresh machine: `make run` and `make test`.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test setup lint bench

setup:
	@bash scripts/bootstrap.sh

run: setup
	$(BIN)/cmpkg serve

# Static checks first (seconds), then the suite on two workers (pytest-xdist), a test module
# per worker so its fixtures (a build, a server) are made once; slow tests run too. A third
# worker was tried: it repeats each module fixture once more and used more CPU than it saved.
# Modules go out in collection order, which tests/conftest.py sorts longest first.
test: setup lint
	$(BIN)/pytest -n 2 --dist loadfile --no-loadscope-reorder

# ruff (style, complexity, formatting), mypy (types), import-linter (layers point down: pyproject).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: setup
	$(BIN)/python benchmarks/run.py
