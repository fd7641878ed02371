#!/usr/bin/env bash
# The GPU check of issue 6: bench/bench.py on the random full-size SD3.5 Medium (real shapes, 1024x1024, 40 steps,
# guidance 4.5) on one CUDA GPU with no network, writing bench-gpu.json and bench-gpu.log into $OUT (or outputs/).
#
# Sized for a 15-minute device budget on one H200, machine start included: the bench stops starting new modes after
# BUDGET_S seconds (default 300) and the whole script is cut at LIMIT_S (default 420); the JSON is rewritten after
# every result, so a cut run keeps what it measured. Modes run most important first (bench.py: ALL_MODES).
#
# The GPU machine has torch, transformers, accelerate and safetensors, but not diffusers or bitsandbytes: they travel
# as wheels in .whl/ (see /work/.library/device/README.md). Once, here, with PyPI reachable:
#
#   echo /.whl/ >> .git/info/exclude
#   P="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64"
#   P="$P --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
#   python3 -m pip download $P -d .whl diffusers==0.42.1 importlib_metadata==10.2.0
#   # bitsandbytes ships one library per CUDA version (125 MB unpacked): with the working tree that can pass the
#   # 64 MiB a call may carry, so carry it unpacked with the CUDA 13.0 library only (the machine's torch is cu130).
#   python3 -m pip download $P -d /tmp/bnb bitsandbytes==0.50.2
#   mkdir -p .whl/site && unzip -q -o /tmp/bnb/bitsandbytes-*.whl -d .whl/site
#   find .whl/site/bitsandbytes -name 'libbitsandbytes_*.so' ! -name '*cuda130*' ! -name '*cpu*' -delete
#   du -sh .whl   # the tree plus this must stay under 64 MiB
#
# Then one device call: run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=480).
#
# Without a GPU, prove the script end to end on the CPU at a reduced size (real widths, 3 transformer layers, one
# layer per text encoder, 256 px, 4 steps), with the modes a CPU can run:
#
#   bash bench/gpu_check.sh --reduced
set -euo pipefail
cd "$(dirname "$0")/.."

OUT_DIR=${OUT:-outputs}
BUDGET_S=${BUDGET_S:-300}
LIMIT_S=${LIMIT_S:-420}
mkdir -p "$OUT_DIR"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export SD35UI_CACHE=${SD35UI_CACHE:-/tmp/sd35ui-cache-gpu-check}

PYTHON=${PYTHON:-python3}
if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi

if compgen -G ".whl/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
if [ -d .whl/site ]; then  # packages carried unpacked (bitsandbytes, trimmed to one CUDA library)
  export PYTHONPATH=$PWD/.whl/site${PYTHONPATH:+:$PYTHONPATH}
fi
"$PYTHON" - <<'EOF'
import importlib.util, sys
missing = [m for m in ("torch", "diffusers", "transformers", "accelerate", "safetensors") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing Python packages: {', '.join(missing)} (carry their wheels in .whl/, see the top of this script)")
if importlib.util.find_spec("bitsandbytes") is None:
    print("note: bitsandbytes is missing: the NF4 modes will be recorded as errors")
EOF

if [ "${1:-}" = "--reduced" ]; then
  ARGS=(--device cpu --shape reduced --size 256 --steps 4 --tiny-steps 8
        --modes eager,profile,vae_channels_last,compile_regional,fastest,sheet)
  NAME=bench-reduced-cpu
else
  "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU: use --reduced')"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv || true
  ARGS=(--device cuda)
  NAME=bench-gpu
fi

set +e
timeout "$LIMIT_S" "$PYTHON" bench/bench.py "${ARGS[@]}" --budget-s "$BUDGET_S" --json "$OUT_DIR/$NAME.json" \
  2>&1 | tee "$OUT_DIR/$NAME.log"
status=${PIPESTATUS[0]}
set -e
echo "bench exit status $status; results in $OUT_DIR/$NAME.json"
exit "$status"
