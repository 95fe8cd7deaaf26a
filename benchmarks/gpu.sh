#!/usr/bin/env bash
# Every GPU benchmark of docs/benchmarks.md in one call, for a session that is lent a GPU machine for a few
# minutes (issue 4): first the tests only a GPU runs (tinygemm int4, the decode loop without host syncs), then
# one layer's product through each weight-only path and the 1.1B LLaMA shape's int4 weights on tinygemm against
# bf16 (issue 23), attention kernels and per-token decode time by context length, and last llmarch against
# transformers on the 1.1B shape and gpt2, compiled (training MFU, batch-1 decode against the bandwidth
# roofline, batch 8 and 32, prefill). The six JSON results go to $OUT (default runs/gpu-bench), the markdown
# tables and each step's log into $OUT/tables-and-logs.tgz: seven files, within what a device call brings
# back (8).
#
#   bash benchmarks/gpu.sh                     # on the GPU machine, from the repository root
#   ONLY=llama-1b-int4 bash benchmarks/gpu.sh  # just the steps named (comma-separated)
#   SMOKE=1 bash benchmarks/gpu.sh             # the same commands at toy sizes on CPU, to check them anywhere
#
# The GPU machine's python3 already holds torch, transformers, safetensors, tokenizers, scipy, matplotlib and
# pytest, so llmarch runs from the source tree without installing. Each step is timed and has a time limit; one
# that fails is reported and the others still run, so a short lease still returns what did work.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu-bench}
mkdir -p "$OUT"
LOGS=$(mktemp -d)
PY=${PY:-python3}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
LLAMA_1B="--name llama-1.1b --d-model 2048 --n-layers 22 --n-heads 32 --n-kv-heads 4 --ffn-hidden 5632 --vocab-size 32000 \
  --context-length 4096"
if [[ ${SMOKE:-0} == 1 ]]; then  # toy shapes on CPU: checks the flags and the plumbing, measures nothing
  DEV="--device cpu"; GPT2="--model gpt-tiny --batch-size 2 --context 64 --prompt-tokens 8 --new-tokens 4 \
    --decode-batches 1,2 --prefill-tokens 64 --repeats 1"
  LLAMA="--model llama-tiny --batch-size 2 --context 64 --prompt-tokens 8 --new-tokens 4 --decode-batches 1 \
    --prefill-tokens 64 --repeats 1"
  ATTN="--attn-device cpu --attn-lengths 256,512 --attn-repeats 1"
  CTX="--ctx-device cpu --ctx-lengths 128,256 --ctx-new-tokens 4 --ctx-rounds 1"
  INT4="--quantize int4 --group-size 32 --decode-batches 1"
  KERNELS="--shapes 1x256x512 --repeats 1 --calls 2"
else
  DEV="--device cuda"; GPT2="--model gpt2 --batch-size 16 --context 1024 --prompt-tokens 128 --new-tokens 128 \
    --decode-batches 1,8,32 --prefill-tokens 1024"  # gpt2's learned positions stop at 1024
  LLAMA="--model llama2-7b $LLAMA_1B --batch-size 8 --context 1024 --prompt-tokens 128 --new-tokens 128 \
    --decode-batches 1,8,32 --prefill-tokens 4096"
  ATTN="--attn-device cuda --attn-lengths 1024,4096,16384,65536,131072"
  CTX="--ctx-device cuda --ctx-lengths 1024,4096,16384,65536"
  INT4="--quantize int4 --group-size 128 --decode-batches 1,8 --prefill-tokens 1024"
  KERNELS=""
fi

step() {  # step NAME LIMIT COMMAND...: run it for at most LIMIT seconds (a lease is short: one step that hangs
  # must not take the others' time), keep its output, say how long it took and whether it worked. ONLY=a,b runs
  # just the steps named (a rerun of the ones that failed)
  local name=$1 limit=$2; shift 2
  [[ -n ${ONLY:-} && ,$ONLY, != *,$name,* ]] && return
  local t0=$SECONDS
  if timeout "$limit" "$@" > "$LOGS/$name.log" 2>&1; then status=ok; else status="FAILED ($?)"; fi
  echo "$name: $status in $((SECONDS - t0)) s"
  tail -n 25 "$LOGS/$name.log"
  tar czf "$OUT/tables-and-logs.tgz" -C "$LOGS" .  # after every step: a lease may end before the last
}

$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
  torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
# In the order of what a short lease most needs: the tests that only a GPU runs; issue 23's int4 target; the
# cheap eager steps; then the compiled comparisons with transformers, whose compiles take longest.
if [[ ${SMOKE:-0} != 1 ]]; then
  step cuda-tests 120 $PY -m pytest -q -o addopts= -p no:cacheprovider -rs tests/test_quant_cuda.py \
    tests/test_generate.py -k "cuda"
fi
# one layer's product through each weight-only path (bf16, int8 cast, cast compiled, int8 kernel, int4): what
# quant/linear.py should take on this device
# shellcheck disable=SC2086  # the option lists are meant to split into words
step quant-kernels 120 $PY benchmarks/quant_kernels.py --device ${DEV#--device } $KERNELS \
  --out "$OUT/quant-kernels.json"
# int4 weights on tinygemm against bf16, decoding only (issue 23's target: int4 >= 1.8x bf16 at batch 1)
# shellcheck disable=SC2086
step llama-1b-int4 240 $PY -m llmarch bench $LLAMA $DEV $INT4 --compile true --train false --transformers false \
  --out "$OUT/llama-1b-int4.json" --markdown "$LOGS/llama-1b-int4.md"
# shellcheck disable=SC2086
step attention 90 $PY -m llmarch bench attention $ATTN --out "$OUT/attention.json" --markdown "$LOGS/attention.md"
# shellcheck disable=SC2086
step decode-context 90 $PY -m llmarch bench decode-context $CTX --out "$OUT/decode-context.json" \
  --markdown "$LOGS/decode-context.md"
# shellcheck disable=SC2086
step llama-1b-compiled 240 $PY -m llmarch bench $LLAMA $DEV --compile true --out "$OUT/llama-1b-compiled.json" \
  --markdown "$LOGS/llama-1b-compiled.md"
# shellcheck disable=SC2086
step gpt2-compiled 180 $PY -m llmarch bench $GPT2 $DEV --compile true --out "$OUT/gpt2-compiled.json" \
  --markdown "$LOGS/gpt2-compiled.md"
