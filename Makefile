# Two entry points, both idempotent on a fresh machine: `make run` and `make test`.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test setup lint bench

setup:
	@bash scripts/bootstrap.sh

run: setup
	$(BIN)/cmpkg serve

# Static checks first (seconds), then the suite on three workers (pytest-xdist) for two cores:
# many tests wait on a JVM, a server or a deadline, and a third worker fills those waits
# (measured: 297 s against 327 s with two). A test module per worker, so its fixtures (a
# build, a server) are made once; slow tests run too.
test: setup lint
	$(BIN)/pytest -n 3 --dist loadfile

# ruff (style, complexity), mypy (types), import-linter (layers point down: pyproject).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: setup
	$(BIN)/python benchmarks/run.py
