#!/usr/bin/env bash
# After `dvc pull` or `dvc checkout`, outputs carry checkout-time mtimes (DVC does not keep them),
# so Snakemake would rerun stages whose outputs merely look older than their inputs. When DVC
# confirms that every output matches dvc.lock, mark them up to date for Snakemake instead.
#
#   workflow/scripts/after-dvc-checkout.sh [snakemake targets, default results/all]
set -euo pipefail
if ! dvc status --quiet; then
  echo "after-dvc-checkout: outputs differ from dvc.lock (see 'dvc status'); run 'dvc repro' or snakemake instead." >&2
  exit 1
fi
snakemake --touch --cores 1 "${@:-results/all}"
