#!/usr/bin/env bash
# After `dvc pull` or `dvc checkout`, outputs carry checkout-time mtimes (DVC does not keep them),
# so Snakemake would rerun stages whose outputs merely look older than their inputs. When DVC
# confirms that every output matches dvc.lock, date them in DAG order for Snakemake instead
# (their own mtimes, upstream first: no marker files inside DVC's outputs).
#
#   workflow/scripts/after-dvc-checkout.sh
set -euo pipefail
if ! dvc status --quiet; then
  echo "after-dvc-checkout: outputs differ from dvc.lock (see 'dvc status'); run 'dvc repro' or snakemake instead." >&2
  exit 1
fi
python -m skinlesion.runners date-outputs
