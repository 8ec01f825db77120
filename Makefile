# Two entry points, both idempotent on a fresh machine: `make run` and `make test`.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test setup lint bench

setup:
	@bash scripts/bootstrap.sh

run: setup
	$(BIN)/cmpkg serve

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python benchmarks/run.py
