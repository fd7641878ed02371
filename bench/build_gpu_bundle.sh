#!/usr/bin/env bash
# Build .whl/: the Python packages bench/gpu_check.sh needs that the GPU machine lacks, so that the check downloads
# nothing there (that machine reaches no package registry). Run once, here, where PyPI is reachable; then every
# device call carries .whl (ignored by git):
#
#   bash bench/build_gpu_bundle.sh
#   run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=540)
#
# The GPU machine (/work/.library/device/KINDS.md) has Python 3.12, torch 2.11.0+cu130, transformers 5.17.0,
# accelerate 1.15.0, safetensors 0.8.0, huggingface_hub 1.33.0, tokenizers, numpy, pillow, sentencepiece,
# protobuf, regex, requests, filelock, packaging; bench.py runs on those (their versions go into its JSON, beside
# our pins). Not there, so carried:
#   diffusers (our pin)            as a wheel, installed at run time by pip --no-index from .whl/
#   importlib_metadata, zipp,      diffusers' imports (zipp: importlib_metadata needs >= 3.20; the machine's is
#   lazy-importer                  unknown), the versions of our .venv
#   bitsandbytes (our pin)         unpacked into .whl/site/ with only its CUDA 13.0 library (the machine's torch is
#                                  cu130) and the CPU one: the wheel holds a library per CUDA version, 43 MB packed
# Everything travels with the working tree, 64 MiB in all: the script checks the sum.
set -euo pipefail
cd "$(dirname "$0")/.."

BUNDLE=${BUNDLE:-.whl}
PYTHON=${PYTHON:-python3}
if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
pin() { sed -nE "s/^$1==([^ #]+).*/\1/p" requirements.txt; }
DIFFUSERS=$(pin diffusers)
BITSANDBYTES=$(pin bitsandbytes)
IMPORTLIB_METADATA=10.2.0
ZIPP=4.1.2
LAZY_IMPORTER=0.1.0
LIMIT_MIB=64

# Wheels for the GPU machine's Python and platform, not this one's.
P=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp
   --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
   --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)

rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/site"
"$PYTHON" -m pip download -q "${P[@]}" -d "$BUNDLE" "diffusers==$DIFFUSERS" \
  "importlib_metadata==$IMPORTLIB_METADATA" "zipp==$ZIPP" "lazy-importer==$LAZY_IMPORTER"

download=$(mktemp -d)
trap 'rm -rf "$download"' EXIT
"$PYTHON" -m pip download -q "${P[@]}" -d "$download" "bitsandbytes==$BITSANDBYTES"
"$PYTHON" -m zipfile -e "$download"/bitsandbytes-*.whl "$BUNDLE/site"
find "$BUNDLE/site/bitsandbytes" -name 'libbitsandbytes_*.so' \
  ! -name 'libbitsandbytes_cuda130.so' ! -name 'libbitsandbytes_cpu.so' -delete

{
  echo "Made by bench/build_gpu_bundle.sh on $(date -u +%Y-%m-%d) for Python 3.12 x86_64 (the GPU machine)."
  echo "Installed there by bench/gpu_check.sh: pip install --no-index --no-deps --target <tmp> $BUNDLE/*.whl;"
  echo "$BUNDLE/site goes on PYTHONPATH as it is."
  (cd "$BUNDLE" && sha256sum ./*.whl && find site -name '*.so' -exec sha256sum {} +)
} >"$BUNDLE/MANIFEST.txt"

bundle=$(du -sb "$BUNDLE" | cut -f1)
tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 -r du -cb 2>/dev/null \
  | awk '$2 == "total" {s += $1} END {print s + 0}')
total=$((bundle + tree))
awk -v b="$bundle" -v t="$total" -v limit="$LIMIT_MIB" -v dir="$BUNDLE" 'BEGIN {
  printf "%s: %.1f MiB; with the working tree %.1f MiB of the %d MiB a device call carries\n", dir, b / 1048576, t / 1048576, limit
}'
if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
  echo "too large for one device call: the bundle and the working tree must stay under $LIMIT_MIB MiB" >&2
  exit 1
fi
