#!/usr/bin/env bash
# The GPU measurements of issue 13, as one bounded script for the GPU machine of the `device` tool
# (../shared/device/README.md): WebGPU against PyTorch with CUDA on the same GPU, and against our
# own CPU path there. Prepare here, from the repository root:
#
#   npm ci && npm run build
#   npx tsc -p tsconfig.json --outDir .device-build      # the scripts as JavaScript: no tsx there
#   bash ../shared/device/make-bundle.sh --data 4000     # Node, the package, Vulkan, 40,000 CIFAR-10 images
#
# then call the device tool's `run` with carry [".device-bundle", ".device-build"] and the command
# `bash scripts/gpu-check.sh`. Results (text and JSON) land in $OUT. Each step has its own timeout, so
# one that hangs costs only its share of the machine's few minutes.
set -u
REPO=$(pwd)
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
# shellcheck source=/dev/null
source .device-bundle/gpu-env.sh
cp -r "$REPO/.device-build/src" "$REPO/.device-build/scripts" "$APP/"
cd "$APP" || exit 1
step() {
  local seconds=$1 name=$2
  shift 2
  echo "== $name" | tee -a "$OUT/summary.txt"
  timeout "$seconds" "$@" >"$OUT/$name.txt" 2>&1
  echo "exit $?" >>"$OUT/$name.txt"
  grep -v '^Warning' "$OUT/$name.txt" | tail -40 | tee -a "$OUT/summary.txt"
}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$OUT/gpu.txt" 2>&1
step 60 doctor node dist/cli/main.js doctor
step 150 profile node scripts/profile-webgpu.js --models vgg,net --steps 20 --json "$OUT/profile.json"
step 150 bench-gpu node scripts/bench.js --backends webgpu --reference --repeat 3 --out "$OUT/bench-gpu.json"
step 90 bench-native node scripts/bench.js --backends native --out "$OUT/bench-native.json"
step 240 time-to-accuracy node scripts/bench.js --time-to-accuracy --backends webgpu --data "$DATA" \
  --epochs 8 --reference --out "$OUT/time-to-accuracy.json"
# Bit-identical on the GPU: train a short run, then `reproduce` retrains it and compares the bytes.
step 120 reproduce bash -c "node dist/cli/main.js --experiment-name gpu --run-name r1 --dataset image-folder \
  --dataset-folder '$DATA' --experiments-folder /tmp/gpu-e --backend webgpu --epochs 1 >/dev/null && \
  node dist/cli/main.js reproduce gpu/r1 --experiments-folder /tmp/gpu-e"
