# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench browser llama-cpp clean

# --no-compile: pip byte-compiles every module of every package one after another (about 40 s on 2 cores, most of
# it torch, transformers and sympy modules nothing imports); Python compiles the ones imported on first use instead.
PIP_INSTALL := $(BIN)/pip install -q --no-compile
# ... and keeps them: with PYTHONDONTWRITEBYTECODE set, every process (each test worker, each CLI test) would
# compile torch's modules again.
unexport PYTHONDONTWRITEBYTECODE

# torch is pinned here (a local CPU build); the package itself only asks for torch>=2.4.
$(BIN)/llmarch: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP_INSTALL) torch==2.13.0 -e .
	touch $@

# the dev extras in one pip run with the package (not after `-e .`: each editable install builds a wheel again)
$(VENV)/.dev: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP_INSTALL) torch==2.13.0 -e '.[dev]'
	touch $(BIN)/llmarch $@

demo: $(BIN)/llmarch
	$(BIN)/llmarch train --model llama-tiny --steps 300 --batch-size 8 --out runs/demo \
		--eval-every 50 --sample-prompt "def main(" 

# The chat page's browser test drives Debian's chromium through chromedriver; where they are absent and apt-get
# can install them (root), they are installed quietly; elsewhere the test skips, saying why.
browser:
	@command -v chromedriver > /dev/null || { command -v apt-get > /dev/null \
		&& { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } \
		> /dev/null 2>&1; } || echo "chromium and chromedriver not installed: the chat page's browser test will skip"

test: $(VENV)/.dev browser
	$(BIN)/python -m pytest -q

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/cpu_vs_transformers.py --out docs/benchmarks-cpu.json

# llama.cpp's Python binding, for the GGUF benchmarks and the tests that compare with it (they skip without it).
# It builds from source (about 6 minutes on 2 cores) for this CPU. On a CPU that advertises AMX (Sapphire Rapids
# and later) it is built for AVX-512 without AMX: -march=native compiles llama.cpp's AMX kernels in, and a VM
# that advertises AMX without granting it crashes on their first instruction (general protection fault).
LLAMA_CPP_AVX512 := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
	-DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON
llama-cpp: $(VENV)/.dev
	CMAKE_ARGS="$$(grep -q amx_tile /proc/cpuinfo 2>/dev/null && echo '$(LLAMA_CPP_AVX512)')" \
		$(BIN)/pip install -q --no-cache-dir 'llama-cpp-python>=0.3'

clean:
	rm -rf $(VENV) runs
