#!/bin/sh
# Twelve training steps of image28-homoode (dopri5, batch 64) on the bundled digits, in a fresh process, run
# from the tree given as $1 (its own `core` comes first on sys.path). Pair two trees with farm-bench:
#   farm-bench -n 3 --warmup 1 --timeout 600 --vs "scripts/step_bench.sh OLD_TREE" -- scripts/step_bench.sh .
cd "$1" && exec "${PYTHON:-python}" -c "
import torch, core
from core.training import TrainConfig, Trainer
torch.set_num_threads(2)
tr = Trainer(TrainConfig(model=core.preset('image28-homoode'), dataset='digits', steps=12, batch_size=64, lr=3e-3, device='cpu'))
for _ in range(12):
    tr.step()
"
