# kbflow: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_HOME ?= .kbflow-demo
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export HF_HUB_OFFLINE := 1

.PHONY: demo test lint typecheck bench bench-venv bench-report serve clean-demo help gpu-venv sglang-venv

help:
	@echo "make demo   # build the environment, run kb-nightly on the bundled sample, search it"
	@echo "make test   # build the environment, run the test suite"
	@echo "make serve  # run the scheduled deployments on this box (KBFLOW_SOURCE, KBFLOW_HOME; README: Operations)"
	@echo "make gpu-venv sglang-venv  # a GPU host: kbflow with faiss-gpu, SGLang in its own environment (README: GPU runbook)"

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "kbflow needs Python 3.11 ($(PYTHON) not found; set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install --quiet -e ".[cpu,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kbflow nightly --home $(DEMO_HOME) --source examples/kb_zh/export --run-date 2026-11-24
	@echo
	@for q in "我单子咋还没到" "退款几天能到账啊" "优惠卷为啥用不了" "发票开错了能重开吗" "今天天气怎么样"; do \
		echo "> kbflow search \"$$q\""; $(BIN)/kbflow search --home $(DEMO_HOME) -k 3 "$$q"; echo; done
	$(BIN)/kbflow eval --home $(DEMO_HOME) --golden examples/kb_zh/golden.jsonl --split test
	@echo
	@echo "> simulated search and click logs for 2026-W47, then the weekly mining"
	$(BIN)/kbflow simulate-logs --home $(DEMO_HOME) --week 2026-W47 --sessions 100
	$(BIN)/kbflow mine --home $(DEMO_HOME) --week 2026-W47

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src flows tasks deployments tests bench
	$(BIN)/ruff format --check src flows tasks deployments tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# Benchmarks (bench/README.md). `make bench SIZES=10000` for a quick pass; BENCH_PARTS picks
# parts; BENCH_ARGS passes more options to bench/run_all.py. The LlamaIndex side needs its own
# environment (it pins marshmallow<4, a downgrade for Great Expectations): .venv-bench, built
# with the main environment's versions as constraints; without it that part is skipped.
BENCH_VENV  := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
SIZES       ?= 10000,100000,1000000
BENCH_PARTS ?= stages,incremental,compare,search,mining,embed
BENCH_ARGS  ?=

$(BENCH_STAMP): pyproject.toml $(STAMP)
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	echo '*' > $(BENCH_VENV)/.gitignore
	$(BENCH_VENV)/bin/pip install --upgrade --quiet pip
	$(BIN)/pip freeze --exclude-editable | grep -v -i '^marshmallow==' > $(BENCH_VENV)/constraints.txt
	$(BENCH_VENV)/bin/pip install --quiet -e ".[cpu,bench]" -c $(BENCH_VENV)/constraints.txt
	touch $(BENCH_STAMP)

bench-venv: $(BENCH_STAMP)

bench: $(STAMP)
	@$(MAKE) --no-print-directory bench-venv || echo "bench: $(BENCH_VENV) could not be built; the LlamaIndex comparison will be skipped"
	$(BIN)/python bench/run_all.py --sizes $(SIZES) --parts $(BENCH_PARTS) $(BENCH_ARGS)

bench-report: $(STAMP)
	$(BIN)/python bench/run_all.py --report-only

# kb-nightly 02:00 and kb-weekly-mining Monday 06:00 (Asia/Shanghai) served from this process, with
# a local Prefect server unless PREFECT_API_URL is set (deployments/deploy.py, README: Operations).
serve: $(STAMP)
	$(BIN)/python deployments/deploy.py serve

# GPU hosts (README: GPU runbook). kbflow's environment with the official faiss-gpu instead of
# faiss-cpu (both install the same files, so an environment holds one), and SGLang in an
# environment of its own: it pins torch, transformers and openai versions kbflow cannot share.
# SGLang 0.5.23 needs CUDA 13 (NVIDIA driver >= 580); older drivers get 0.5.8 (CUDA 12.9,
# the first with /v1/rerank). Override with SGLANG_VERSION=...
GPU_VENV      := .venv-gpu
SGLANG_VENV   := .venv-sglang
DRIVER_MAJOR  := $(shell nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1 | cut -d. -f1)
SGLANG_VERSION ?= $(if $(DRIVER_MAJOR),$(if $(shell [ $(DRIVER_MAJOR) -ge 580 ] && echo y),0.5.23,0.5.8),0.5.23)

gpu-venv: $(GPU_VENV)/.installed
$(GPU_VENV)/.installed: pyproject.toml
	test -x $(GPU_VENV)/bin/python || $(PYTHON) -m venv $(GPU_VENV)
	$(GPU_VENV)/bin/pip install --upgrade --quiet pip
	$(GPU_VENV)/bin/pip install --quiet -e ".[gpu]"
	$(GPU_VENV)/bin/python -c "import faiss; n = faiss.get_num_gpus(); print(f'faiss {faiss.__version__}: {n} GPU(s)'); raise SystemExit(0 if n else 'faiss-gpu sees no GPU: check the driver (nvidia-smi)')"
	touch $@

sglang-venv: $(SGLANG_VENV)/.installed
$(SGLANG_VENV)/.installed:
	@echo "SGLang $(SGLANG_VERSION) (NVIDIA driver $(or $(DRIVER_MAJOR),not found))"
	test -x $(SGLANG_VENV)/bin/python || $(PYTHON) -m venv $(SGLANG_VENV)
	$(SGLANG_VENV)/bin/pip install --upgrade --quiet pip
	$(SGLANG_VENV)/bin/pip install --quiet "sglang==$(SGLANG_VERSION)"
	$(SGLANG_VENV)/bin/python -c "import importlib.metadata as m; print('sglang', m.version('sglang'))"
	@echo "export KBFLOW_EMBED__SGLANG_PYTHON=$(CURDIR)/$(SGLANG_VENV)/bin/python"
	touch $@

clean-demo:
	rm -rf $(DEMO_HOME)
