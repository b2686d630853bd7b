#!/usr/bin/env bash
# The former name of after-dvc.sh (which also covers `dvc commit -f`), kept for existing scripts.
exec bash "$(dirname "${BASH_SOURCE[0]}")/after-dvc.sh" "$@"
