# Two entry points for a fresh machine: `make demo` and `make test` (each creates .venv first).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXAMPLE := examples/illugenbench

.PHONY: demo test lint install

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[metrics,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rubric-judge plan $(EXAMPLE)/tasks --data $(EXAMPLE)/manifest.jsonl --outputs $(EXAMPLE)/outputs/good-model

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check rubric_judge tests bench examples
