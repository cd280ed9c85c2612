#!/usr/bin/env bash
# Submit a curation job to a Ray head on this machine, exactly as to a cluster:
#   deploy/submit-local.sh --input tests-or-your-data --output /tmp/curated [--config my.yaml]
# Starts a head (token auth, as Ray >= 2.52 requires for job clients), submits
# `python -m curate run …` with this checkout as the working dir, waits, stops the head.
# The head listens on RAY_PORT (default 6380: 6379 is often a Redis server).
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=token
ray start --head --port "${RAY_PORT:-6380}" --num-cpus "${NUM_CPUS:-2}" --disable-usage-stats --include-dashboard=true >/dev/null
trap 'ray stop >/dev/null 2>&1 || true' EXIT
ray job submit --address "http://127.0.0.1:8265" --working-dir . -- python -m curate run "$@"
