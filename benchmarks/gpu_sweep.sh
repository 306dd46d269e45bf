#!/usr/bin/env bash
# The diffusion claims' sweep at Park's size on one GPU, within one device session (15 minutes in all):
# 32x32, channels 64/128/256, batch 64, deltas 0.1/0.2/0.4/0.8 x 5 seeds as ONE ensemble of 20 members
# (a GPU step is launch-bound: one vmapped ensemble, fused AdamW), 20k steps as the goal. Training stops at
# the first checkpoint past BUDGET seconds (default 660: the session less start-up and the analysis) and
# a rerun resumes from there; the records have the CPU sweep's format, and the analysis reads what exists.
#
#   bash benchmarks/gpu_sweep.sh [RUN_DIR]      # BUDGET=600 bash benchmarks/gpu_sweep.sh ...
#
# Not yet measured: no GPU was available to the work that wrote it (README, docs/diffusion.md).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=${1:-runs/gpu-sweep}
BUDGET=${BUDGET:-660}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python benchmarks/diffusion.py --device cuda --paper --steps 20
python -m validation.diffusion --sweep --gpu --run-dir "$RUN_DIR" --budget-s "$BUDGET" --out "$RUN_DIR-report"
