# make run: install into .venv and start budstikke on 127.0.0.1:8080 (SQLite, file outboxes).
# make test: install and run the whole test suite with the linters.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: install
	$(BIN)/budstikke serve

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# One test process per core, at most four: most tests wait on sockets and child processes.
test: lint
	$(BIN)/pytest --numprocesses=auto --maxprocesses=4

bench: install
	$(BIN)/python bench/quick.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
