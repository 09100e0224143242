#!/bin/bash
# Two one-thread runs at once against one two-thread run after the other (how `python -m core.study --jobs`
# should use a 2-core CPU): 40 steps of HomoODE with dopri5 on the bundled digits, batch 64. Run it alone.
#   bash scripts/threads_vs_jobs.sh            (PYTHON=python3 to pick the interpreter)
set -euo pipefail
PY=${PYTHON:-python}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
RUN=($PY -m core.train --preset image28-homoode --dataset digits --ode-method dopri5 --rtol 1e-3 --atol 1e-3
     --steps 40 --batch-size 64 --eval-every 0 --eval-batches 1 --test-limit 64 --quiet --overwrite)
now() { date +%s.%N; }
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
t0=$(now); "${RUN[@]}" --threads 2 --out "$OUT/a" >/dev/null; t1=$(now)
one=$(echo "$t1 - $t0" | bc)
t0=$(now); "${RUN[@]}" --threads 1 --out "$OUT/b" >/dev/null & "${RUN[@]}" --threads 1 --out "$OUT/c" >/dev/null; wait; t1=$(now)
two=$(echo "$t1 - $t0" | bc)
echo "one 2-thread run: ${one} s; two 1-thread runs at once: ${two} s"
echo "throughput of two at once over one after the other: $(echo "scale=2; 2 * $one / $two" | bc)x"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
