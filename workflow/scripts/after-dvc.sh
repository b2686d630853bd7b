#!/usr/bin/env bash
# Run after any DVC command that (re)writes outputs: `dvc checkout`, `dvc pull`, `dvc commit -f` (as after
# a snakemake run), `dvc exp apply`. They leave outputs with new modification times in no DAG order
# (DVC keeps hashes, not mtimes; commit rewrites the single-file outputs it caches), and Snakemake
# would rerun stages whose outputs merely look older than their inputs. When DVC confirms that every
# output matches dvc.lock, date them in DAG order for Snakemake instead (their own mtimes, upstream
# first, with Snakemake's timestamp and benchmark files where a Snakemake run left them; no new marker
# files inside DVC's outputs). After it `snakemake -n` plans nothing; a later edit still reruns.
#
#   workflow/scripts/after-dvc.sh
set -euo pipefail
if ! dvc status --quiet; then
  echo "after-dvc: outputs differ from dvc.lock (see 'dvc status'); run 'dvc repro' or snakemake instead." >&2
  exit 1
fi
python -m skinlesion.runners date-outputs
