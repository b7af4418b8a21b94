# kbflow: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_HOME ?= .kbflow-demo
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export HF_HUB_OFFLINE := 1

.PHONY: demo test lint typecheck bench clean-demo help

help:
	@echo "make demo   # build the environment, run kb-nightly on the bundled sample, search it"
	@echo "make test   # build the environment, run the test suite"

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "kbflow needs Python 3.11 ($(PYTHON) not found; set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install --quiet -e ".[dev]"
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
	$(BIN)/ruff check src flows tasks tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/bench_stages.py --entries 100000

clean-demo:
	rm -rf $(DEMO_HOME)
