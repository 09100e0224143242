#!/usr/bin/env bash
# The GPU check, in one go (about 5 minutes on an H100/H200-class card):
#   bash scripts/device_check.sh [OUT_DIR]      (default: device-check/)
# 1. the CUDA tests (they skip elsewhere), 2. 50 bf16 training steps of paper-cifar10 on random CIFAR-shaped
# data, 3. a torchrun smoke on every visible GPU, 4. the throughput benchmark in fp32 and bf16.
# Every result is written under OUT_DIR (JSON and logs) with the card's name; nothing needs the network.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-device-check}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/log.txt"; }

"$PY" - <<'EOF' | tee "$OUT/card.json"
import json, torch
cards = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "cards": cards}))
EOF
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -lt 1 ]; then
    log "no CUDA GPU visible: nothing to check here"
    exit 1
fi

log "1/4 CUDA tests"
"$PY" -m pytest -q tests/core/test_solvers.py -k cuda 2>&1 | tee "$OUT/cuda_tests.txt" | tail -3

log "2/4 paper-cifar10, 50 bf16 steps on random CIFAR-shaped data"
rm -rf "$OUT/bf16-run"
"$PY" -m core.train --model homoode --preset paper-cifar10 --dataset random32 --steps 50 --batch-size 128 \
    --precision bf16 --device cuda --eval-every 50 --eval-batches 4 --quiet --out "$OUT/bf16-run" \
    2>&1 | tee "$OUT/bf16_train.txt" | tail -2

log "3/4 torchrun on $GPUS GPU(s)"
rm -rf "$OUT/ddp-run"
torchrun --standalone --nproc_per_node "$GPUS" -m core.train --model homoode --dataset random32 --steps 20 \
    --batch-size $((64 * GPUS)) --device cuda --eval-every 20 --eval-batches 2 --quiet --out "$OUT/ddp-run" \
    2>&1 | grep -v "^W" | tee "$OUT/torchrun.txt" | tail -2

log "4/4 throughput, fp32 and bf16"
for precision in fp32 bf16; do
    "$PY" -m core.bench throughput --device cuda --precision "$precision" --steps 5 --warmup 2 \
        --json "$OUT/throughput-$precision.json" 2>>"$OUT/log.txt" | tee "$OUT/throughput-$precision.md"
done
log "done: $OUT"
