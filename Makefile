# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean

# torch is pinned here (a local CPU build); the package itself only asks for torch>=2.4.
$(BIN)/llmarch: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev: $(BIN)/llmarch
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: $(BIN)/llmarch
	$(BIN)/llmarch train --model llama-tiny --steps 300 --batch-size 8 --out runs/demo \
		--eval-every 50 --sample-prompt "def main(" 

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/cpu_vs_transformers.py --out docs/benchmarks-cpu.json

clean:
	rm -rf $(VENV) runs
