#!/usr/bin/env bash
# The GPU check (issues 6 and 13): bench/bench.py on the random full-size SD3.5 Medium (real shapes, 1024x1024,
# 40 steps, guidance 4.5) on one CUDA GPU that reaches no package registry. Nothing is downloaded at run time: the
# packages the GPU machine lacks travel in .whl/, made once by bench/build_gpu_bundle.sh where PyPI is reachable,
# and are installed from there with pip --no-index.
#
#   bash bench/build_gpu_bundle.sh                                          # once, here: fills .whl/
#   run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=540)  # the device call (device README)
#   bash bench/gpu_check.sh --dry      # the same steps on a CPU, mini shape, 64 px: the plumbing, in under a minute
#   bash bench/gpu_check.sh --reduced  # on a CPU, real widths (3 layers), 256 px, inductor, no sheet: ~15 min
#
# Steps, the most decisive figures first. Each mode has its own time limit (bench.py --mode-limits; a mode past it
# is stopped and recorded as "timeout", and the next one runs), each step a hard one (timeout), all inside LIMIT_S
# (default 470 s: under 8 minutes on an H100, model builds included):
#   1. nf4_model_offload: peak GPU memory (it decides the 8-12 GB advice) and s/image at 1024^2;
#      eager: bf16 s/image against the floor; compile_regional with inductor's cache empty in a fresh folder (the
#      cold compile of a first start)
#   2. a new process on that cache: compile_regional_warm (the compile of a second start); sheet vs its cells
#   3. with the time left: text encoders streamed (the 8-16 GB advice), NF4, model offload, profile, attention
# Results in $OUT (else outputs/gpu-check): step1.json .. step3.json (bench.py's), gpu-check.json (bench/report.py:
# every mode's status in plan order, the rows, versions against the pins), gpu-check.md (the table for README.md
# and PERF.md), gpu-check.log (all output), env.txt (GPU and packages).
set -euo pipefail
cd "$(dirname "$0")/.."

KIND=gpu
case "${1:-}" in
  "") ;;
  --dry) KIND=dry ;;
  --reduced) KIND=reduced ;;
  *) echo "usage: bash bench/gpu_check.sh [--dry | --reduced]" >&2; exit 2 ;;
esac

OUT_DIR=${OUT:-outputs/gpu-check}
BUNDLE=${BUNDLE:-.whl}  # made by bench/build_gpu_bundle.sh
mkdir -p "$OUT_DIR"

# step NAME LIMITS: bench.py on the modes named in LIMITS (mode=seconds,...), cut at what is left of LIMIT_S
step() {
  local name=$1 limits=$2 modes left hard item status
  modes=$(echo "$limits" | sed -E 's/=[0-9]+//g')
  left=$((LIMIT_S - (SECONDS - START)))
  hard=$STARTUP_S
  for item in ${limits//,/ }; do hard=$((hard + ${item#*=})); done
  if [ "$hard" -gt "$left" ]; then hard=$left; fi
  if [ "$hard" -lt "$((STARTUP_S + 10))" ]; then
    echo "== $name: skipped, ${left} s left of LIMIT_S"
    STATUS+=("$name=skipped")
    return
  fi
  echo "== $name: $modes (at most $hard s; $left s left)"
  set +e
  timeout -k 10 "$hard" "$PYTHON" bench/bench.py "${COMMON[@]}" --modes "$modes" --mode-limits "$limits" \
    --budget-s "$((hard - STARTUP_S / 2))" --json "$OUT_DIR/$name.json"
  status=$?
  set -e
  STATUS+=("$name=$status")
}

main() {
  START=$SECONDS  # LIMIT_S counts from here: the bundle's install and the package check included
  rm -f "$OUT_DIR"/step[123].json "$OUT_DIR"/gpu-check.json "$OUT_DIR"/gpu-check.md  # no stale step of a past run
  export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
  export SD35UI_CACHE=${SD35UI_CACHE:-/tmp/sd35ui-cache-gpu-check}
  if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
  fi
  # The bundle, installed from local files only.
  if compgen -G "$BUNDLE/*.whl" >/dev/null; then
    local site
    site=$(mktemp -d /tmp/sd35ui-site-XXXXXX)
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$BUNDLE"/*.whl
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
  fi
  if [ -d "$BUNDLE/site" ]; then  # carried unpacked: bitsandbytes with one CUDA library
    export PYTHONPATH=$PWD/$BUNDLE/site${PYTHONPATH:+:$PYTHONPATH}
  fi
  "$PYTHON" bench/bench.py --check-packages | tee "$OUT_DIR/env.txt"

  case $KIND in
    gpu)
      "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU: use --dry or --reduced')"
      nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee -a "$OUT_DIR/env.txt" || true
      COMMON=(--device cuda --models fullsize)
      LIMIT_S=${LIMIT_S:-470}
      STARTUP_S=45  # process start, imports and building the full-size model on the GPU
      LIMITS1=nf4_model_offload=120,eager=60,compile_regional=150
      LIMITS2=compile_regional_warm=75,sheet=90
      LIMITS3=offload_text_encoders=60,nf4_offload_text_encoders=90,nf4=60,model_offload=60,profile=30,attention=40
      ;;
    dry)  # the plumbing only: tracing without inductor's code generation, 2 images and 2 sheet rounds
      COMMON=(--device cpu --models fullsize --shape mini --size 64 --steps 2 --images 2 --sheet-rounds 2
              --compile-backend aot_eager)
      LIMIT_S=${LIMIT_S:-170}
      STARTUP_S=20
      LIMITS1=nf4_model_offload=30,eager=30,compile_regional=60
      LIMITS2=compile_regional_warm=60,sheet=30
      LIMITS3=offload_text_encoders=30,nf4_offload_text_encoders=30,nf4=30,model_offload=30  # CUDA only: skipped
      ;;
    reduced)
      COMMON=(--device cpu --models fullsize --shape reduced --size 256 --steps 4)
      LIMIT_S=${LIMIT_S:-2400}
      STARTUP_S=60
      LIMITS1=nf4_model_offload=60,eager=400,compile_regional=900
      LIMITS2=compile_regional_warm=700  # the sheet: bench/sheet_bench.py on the tiny model
      LIMITS3=offload_text_encoders=60,nf4_offload_text_encoders=60,nf4=60,model_offload=60,profile=120
      ;;
  esac
  # Empty: step 1 compiles cold, step 2 finds what step 1 left (a second start). Triton's kernels go inside it.
  export TORCHINDUCTOR_CACHE_DIR
  TORCHINDUCTOR_CACHE_DIR=$(mktemp -d /tmp/sd35ui-inductor-XXXXXX)
  unset TRITON_CACHE_DIR

  STATUS=()
  step step1 "$LIMITS1"
  step step2 "$LIMITS2"
  step step3 "$LIMITS3"
  rm -rf "$TORCHINDUCTOR_CACHE_DIR"

  echo "== report ($((SECONDS - START)) s)"
  "$PYTHON" bench/report.py "$OUT_DIR"/step1.json "$OUT_DIR"/step2.json "$OUT_DIR"/step3.json \
    --step-status "$(IFS=,; echo "${STATUS[*]}")" --json "$OUT_DIR/gpu-check.json" --markdown "$OUT_DIR/gpu-check.md"
  cat "$OUT_DIR/gpu-check.md"
}

main 2>&1 | tee "$OUT_DIR/gpu-check.log"
exit "${PIPESTATUS[0]}"
