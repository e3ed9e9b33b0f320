# rlhfv: every target installs what it needs into .venv first, so each works as the only command on a fresh clone.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU-only machines take the CPU build of torch (a CUDA build is several GB); machines with an NVIDIA driver get the
# default build from the package index. Override with TORCH_SPEC=... if you need a specific one.
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
TORCH_SPEC ?= $(if $(HAS_GPU),torch,torch==2.13.0)
EXTRAS ?= dev

RECIPE ?= recipes/demo/config_demo.yaml
# the training command a recipe is for: train (Dense DPO), reward (reward model) or rl (RLOO); and its module
COMMAND ?= train
COMMAND_MODULE = $(if $(filter reward,$(COMMAND)),rlhfv.reward.cli,$(if $(filter rl,$(COMMAND)),rlhfv.rl.cli,rlhfv.train))
ACCELERATE ?=
NUM_PROCESSES ?= 1
ARGS ?=
BENCH ?= all
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: help install test test-slow test-gpu train bench proof style quality clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: RECIPE=<yaml> ACCELERATE=ddp|zero2|zero3|fsdp|single_gpu NUM_PROCESSES=N ARGS='--field value'"
	@echo "             COMMAND=train|reward|rl (the command the recipe is for; default train)"

$(BIN)/.installed: setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $@

install: $(BIN)/.installed ## create .venv and install rlhfv with its dev tools

test: install ## run the fast test suite (GPU and slow tests are skipped)
	HF_HUB_OFFLINE=1 WANDB_MODE=offline $(BIN)/python -m pytest -q -p no:cacheprovider $(ARGS)

test-slow: install ## run the slow tests too
	HF_HUB_OFFLINE=1 WANDB_MODE=offline $(BIN)/python -m pytest -q -p no:cacheprovider -m "not gpu" $(ARGS)

test-gpu: install ## run the GPU tests (needs a CUDA GPU)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m gpu $(ARGS)

train: install ## train a recipe: make train [RECIPE=...] [ACCELERATE=ddp NUM_PROCESSES=8] [ARGS='--field value']
ifeq ($(ACCELERATE),)
	$(BIN)/rlhfv $(COMMAND) --config $(RECIPE) $(ARGS)
else
	@test -f recipes/accelerate_configs/$(ACCELERATE).yaml || { echo "make train: ACCELERATE=$(ACCELERATE) has no" \
		"recipes/accelerate_configs/$(ACCELERATE).yaml; choose single_gpu, ddp, zero2, zero3 or fsdp" >&2; exit 1; }
	@case "$(ACCELERATE)" in zero*) $(BIN)/python -c "import deepspeed" 2>/dev/null || { echo "make train:" \
		"ACCELERATE=$(ACCELERATE) needs DeepSpeed: $(BIN)/pip install -e '.[deepspeed]'" >&2; exit 1; };; esac
	$(BIN)/accelerate launch --config_file recipes/accelerate_configs/$(ACCELERATE).yaml \
		--num_processes $(NUM_PROCESSES) -m $(COMMAND_MODULE) --config $(RECIPE) $(ARGS)
endif

bench: install ## run the benchmarks (BENCH=all|loss_head|train_step|ref_precompute|converter|feedback)
	$(BIN)/python -m bench.run --only $(BENCH) $(ARGS)

proof: install ## the synthetic proof: SFT learns a language prior, then SFT-on-corrections vs DPO vs Dense DPO (CPU)
	HF_HUB_OFFLINE=1 $(BIN)/python -m experiments.prior_proof --config recipes/proof/prior/config_proof.yaml $(ARGS)

style: install ## format the code
	$(BIN)/ruff format rlhfv data_tools experiments tests bench
	$(BIN)/ruff check --fix rlhfv data_tools experiments tests bench

quality: install ## check format and lint
	$(BIN)/ruff format --check rlhfv data_tools experiments tests bench
	$(BIN)/ruff check rlhfv data_tools experiments tests bench

clean: ## remove outputs and caches (keeps .venv)
	rm -rf outputs .pytest_cache .ruff_cache build dist *.egg-info
