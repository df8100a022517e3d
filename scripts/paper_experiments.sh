#!/usr/bin/env bash
# Queues the paper-style experiments on the default synthetic data and runs them one at a time:
# Table 1 (DP3D, its ablations and the baselines) and the parts-count curve (Fig. 8).
# Then tabulate:  bash scripts/paper_experiments.sh table
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-run}" = "table" ]; then
  dvc exp show --json --all-commits > /tmp/exp_show.json  # experiments of every commit
  echo "Table 1 (test split of the default synthetic data):"
  python scripts/tabulate_experiments.py /tmp/exp_show.json --only t1- --no-baseline \
    --params model.type loss.canonicalisation loss.arap loss.entropy \
    --metrics mpjpe_mm re14_mm flat_mpjpe_mm mpjpe_best_flip_mm
  echo
  echo "Parts-count curve:"
  python scripts/tabulate_experiments.py /tmp/exp_show.json --only parts- --no-baseline \
    --params model.parts --sort-by model.parts --metrics mpjpe_mm re14_mm flat_mpjpe_mm
  exit 0
fi
q() { dvc exp run --queue -n "$1" "${@:2}"; }
q t1-dp3d
q t1-no-canon   -S loss.canonicalisation=0
q t1-no-arap    -S loss.arap=0
q t1-no-entropy -S loss.entropy=0
q t1-no-parts   -S model.type=no_parts
q t1-c3dpo      -S model.type=c3dpo
for m in 1 2 5 10 16; do q "parts-$m" -S model.parts=$m; done
dvc queue start -j 1
echo "queued; follow with: dvc queue status, then: bash scripts/paper_experiments.sh table"
